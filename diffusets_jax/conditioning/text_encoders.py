"""Text encoders: prompts -> unit-norm embeddings (n, dim) float32.

Every encoder has `name`, `model` and `dim` (recorded in a trained model's config, since a model
only understands the embeddings it was trained with) and `encode(prompts)`.
"""
import hashlib
import re
from typing import Protocol, Sequence

import numpy as np


class TextEncoder(Protocol):
  name: str
  model: str
  dim: int

  def encode(self, prompts: Sequence[str]) -> np.ndarray:
    ...


class HashingEncoder:
  """Bag-of-words feature hashing: a deterministic, offline placeholder, not a language model.

  Each lower-cased word adds +-1 at a position chosen by a stable hash (blake2b), and the vector
  is L2-normalised. Prompts that share words get similar vectors; synonyms do not.
  """
  name = 'hashing'

  def __init__(self, dim: int = 256):
    if dim < 8:
      raise ValueError(f'hashing encoder dim must be at least 8, got {dim}')
    self.dim = dim
    self.model = f'bag-of-words-blake2b-{dim}'

  def _bucket(self, word: str) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode('utf-8'), digest_size=8).digest()
    value = int.from_bytes(digest, 'little')
    return value % self.dim, 1.0 if (value >> 63) & 1 else -1.0

  def encode(self, prompts: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(prompts), self.dim), np.float32)
    for row, prompt in enumerate(prompts):
      words = re.findall(r'\w+', prompt.lower())
      if not words:
        raise ValueError(f'cannot embed a prompt with no words: {prompt!r}')
      for word in words:
        index, sign = self._bucket(word)
        out[row, index] += sign
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


ENCODERS = {'hashing': HashingEncoder}


def make_text_encoder(text_config) -> TextEncoder:
  """Builds the encoder named by `text_config.encoder` (see configs/default.py)."""
  name = text_config.encoder
  if name not in ENCODERS:
    raise ValueError(f'unknown text encoder {name!r}; available: {sorted(ENCODERS)}')
  return ENCODERS[name](dim=text_config.dim)
