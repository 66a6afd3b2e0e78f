"""Text encoders: prompts -> embeddings (n, dim) float32, chosen by `config.text.encoder`.

- `minilm`: all-MiniLM-L6-v2 in Flax, 384-d, offline (the default).
- `openai`: the OpenAI embeddings API, `text-embedding-ada-002` (1536-d, the paper's) by default,
  or text-embedding-3-small/large; needs OPENAI_API_KEY.
- `hashing`: bag-of-words feature hashing, a deterministic placeholder for quick tests.

A model only understands the embeddings it was trained with, so `identity(config.text)` (encoder,
model, width and prompt template) is recorded with the latents and the trained U-Net, and
sampling refuses another.
"""
import hashlib
import re
from typing import Protocol, Sequence

import ml_collections
import numpy as np

from diffusets_jax.conditioning import embedding_cache, minilm, openai_encoder, prompts


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


ENCODERS = ('minilm', 'openai', 'hashing')
DEFAULT_MODELS = {'minilm': minilm.MODEL_NAME, 'openai': 'text-embedding-ada-002',
                  'hashing': 'bag-of-words-blake2b'}


def resolve(text_config) -> None:
  """Fills `model` and `dim` where the config leaves them to the encoder ('' and 0), and checks
  they are possible; the config then records exactly what the model is conditioned on."""
  name = text_config.encoder
  if name not in ENCODERS:
    raise ValueError(f'unknown text encoder {name!r}; choose one of {", ".join(ENCODERS)}')
  text_config.model = text_config.model or DEFAULT_MODELS[name]
  if name == 'minilm':
    if text_config.model != minilm.MODEL_NAME:
      raise ValueError(f'the minilm encoder is {minilm.MODEL_NAME}, got text.model='
                       f'{text_config.model!r}')
    if text_config.dim not in (0, minilm.MiniLMEncoder.dim):
      raise ValueError(f'{minilm.MODEL_NAME} embeddings are {minilm.MiniLMEncoder.dim}-d, got '
                       f'text.dim={text_config.dim} (leave it 0 to follow the encoder)')
    text_config.dim = minilm.MiniLMEncoder.dim
  elif name == 'openai':
    # Construction checks the model/width pair; it needs no key and makes no request.
    text_config.dim = openai_encoder.OpenAIEncoder(text_config.model, text_config.dim).dim
  else:
    text_config.dim = text_config.dim or 256
    text_config.model = f'{DEFAULT_MODELS["hashing"]}-{text_config.dim}'


def embedding_dim(text_config) -> int:
  """The text width a config asks for, resolved without changing the config."""
  resolved = ml_collections.ConfigDict(text_config.to_dict())
  resolve(resolved)
  return resolved.dim


def identity(text_config) -> dict:
  """What a trained model's conditions depend on: encoder, model, width and prompt template."""
  return dict(encoder=text_config.encoder, model=text_config.model, dim=int(text_config.dim),
              template={k: text_config.template[k] for k in sorted(text_config.template)})


def describe(identity: dict) -> str:
  return f'{identity["encoder"]} ({identity["model"]}, {identity["dim"]}-d)'


def check_same_encoder(trained: dict, offered: dict, what: str, remedy: str,
                       template: bool = False) -> None:
  """Raises ValueError unless `offered` names the text encoder (encoder, model, width) that
  `trained` records, and with `template` its prompt template too: a model understands only
  the embeddings it was trained with. `what` says whose record `trained` is."""
  keys = ('encoder', 'model', 'dim') + (('template',) if template else ())
  differing = [key for key in keys if trained.get(key) != offered.get(key)]
  if differing:
    field = 'prompt template' if differing == ['template'] else 'encoder'
    raise ValueError(f'{what} was made with text encoder {describe(trained)}'
                     f'{" and its prompt template" if template else ""}, but '
                     f'{describe(offered)} is given; the {field} differs. {remedy}')


def embed_reports(encoder: TextEncoder, template, reports, progress: bool = False) -> np.ndarray:
  """Text embeddings (n, dim) of n records' prompts (each record's reports in order), each
  distinct prompt embedded once."""
  distinct, prompt_index = prompts.prompt_table(template, reports)
  embedded = encoder.encode(distinct, progress=True) if progress else encoder.encode(distinct)
  return embedded[prompt_index]


def make_text_encoder(text_config, use_cache: bool = True) -> embedding_cache.CachedEncoder:
  """The encoder named by a resolved `text_config` (see diffusets_jax/config_schema.py), behind the
  embedding cache in `text_config.cache_dir` (none if use_cache is False, the dir is '', or the
  encoder is `hashing`, which is cheaper to recompute than to read back)."""
  name = text_config.encoder
  if name == 'minilm':
    encoder = minilm.MiniLMEncoder(batch_size=text_config.batch_size)
  elif name == 'openai':
    encoder = openai_encoder.OpenAIEncoder(
        text_config.model, text_config.dim, text_config.openai.batch_size,
        text_config.openai.base_url, text_config.openai.max_retries,
        text_config.openai.timeout_seconds)
  elif name == 'hashing':
    encoder = HashingEncoder(dim=text_config.dim)
  else:
    raise ValueError(f'unknown text encoder {name!r}; choose one of {", ".join(ENCODERS)}')
  cached = use_cache and text_config.cache_dir and name != 'hashing'
  cache = embedding_cache.EmbeddingCache(text_config.cache_dir) if cached else None
  return embedding_cache.CachedEncoder(encoder, cache)
