"""On-disk cache of text embeddings, keyed by (encoder, model, exact prompt text).

One file per entry, written to a temporary name and renamed into place, so two processes may
write at once (each rename is atomic; both write the same bytes) and a killed writer leaves no
partial entry. Each file carries its prompt and a SHA-256 checksum: a corrupt or truncated entry
is detected on read, removed, and recomputed.

Entry layout: MAGIC, uint32 dim, uint32 prompt byte length, prompt (UTF-8), float32[dim],
then the SHA-256 of everything before it.
"""
import hashlib
import json
import logging
import os
import struct
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from diffusets_jax.conditioning.prompts import check_prompts

log = logging.getLogger(__name__)

MAGIC = b'DSJEMB1\n'
_HEADER = struct.Struct('<II')
_DIGEST = 32


class EmbeddingCache:

  def __init__(self, root: str | Path):
    self.root = Path(os.path.expanduser(str(root)))

  def path(self, encoder: str, model: str, prompt: str) -> Path:
    key = hashlib.sha256(json.dumps([encoder, model, prompt]).encode('utf-8')).hexdigest()
    safe_model = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in model)
    return self.root / encoder / safe_model / key[:2] / f'{key}.emb'

  def get(self, encoder: str, model: str, prompt: str, dim: int) -> np.ndarray | None:
    """The cached (dim,) embedding, or None if absent or corrupt (a corrupt file is removed)."""
    path = self.path(encoder, model, prompt)
    try:
      data = path.read_bytes()
    except FileNotFoundError:
      return None
    vector = _decode(data, prompt, dim)
    if vector is None:
      log.warning('corrupt embedding cache entry %s: removed, will recompute', path)
      path.unlink(missing_ok=True)
    return vector

  def put(self, encoder: str, model: str, prompt: str, vector: np.ndarray) -> None:
    path = self.path(encoder, model, prompt)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix='.tmp-', suffix='.emb')
    try:
      with os.fdopen(descriptor, 'wb') as f:
        f.write(_encode(prompt, vector))
      os.replace(tmp, path)
    except BaseException:
      Path(tmp).unlink(missing_ok=True)
      raise


def _encode(prompt: str, vector: np.ndarray) -> bytes:
  text = prompt.encode('utf-8')
  vector = np.asarray(vector, '<f4').reshape(-1)
  body = MAGIC + _HEADER.pack(len(vector), len(text)) + text + vector.tobytes()
  return body + hashlib.sha256(body).digest()


def _decode(data: bytes, prompt: str, dim: int) -> np.ndarray | None:
  text = prompt.encode('utf-8')
  expected = len(MAGIC) + _HEADER.size + len(text) + 4 * dim + _DIGEST
  if len(data) != expected or not data.startswith(MAGIC):
    return None
  body, digest = data[:-_DIGEST], data[-_DIGEST:]
  if hashlib.sha256(body).digest() != digest:
    return None
  if _HEADER.unpack_from(data, len(MAGIC)) != (dim, len(text)):
    return None
  start = len(MAGIC) + _HEADER.size
  if data[start:start + len(text)] != text:
    return None
  vector = np.frombuffer(data, '<f4', dim, start + len(text)).astype(np.float32)
  return vector if np.all(np.isfinite(vector)) else None


class CachedEncoder:
  """A TextEncoder that embeds each distinct prompt once, in chunks, skipping those its cache
  holds (cache None: no cache). `encode(prompts, progress=True)` shows a progress bar over the
  prompts being computed.
  """

  def __init__(self, encoder, cache: EmbeddingCache | None):
    self.encoder = encoder
    self.cache = cache
    # Whole encoder batches (OpenAI: one request each), small enough for the bar to move.
    self.chunk_size = max(64, getattr(encoder, 'batch_size', 64))
    self.name, self.model, self.dim = encoder.name, encoder.model, encoder.dim

  def encode(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
    check_prompts(prompts)
    if not prompts:
      return np.zeros((0, self.dim), np.float32)
    distinct = list(dict.fromkeys(prompts))
    found = {p: self.cache.get(self.name, self.model, p, self.dim) if self.cache else None
             for p in distinct}
    missing = [p for p, vector in found.items() if vector is None]
    with tqdm(total=len(missing), desc=f'embed prompts ({self.name}: {self.model})',
              unit='prompt', disable=not progress or not missing) as bar:
      for start in range(0, len(missing), self.chunk_size):
        chunk = missing[start:start + self.chunk_size]
        for prompt, vector in zip(chunk, self.encoder.encode(chunk)):
          if self.cache:
            self.cache.put(self.name, self.model, prompt, vector)
          found[prompt] = vector
        bar.update(len(chunk))
    return np.stack([found[p] for p in prompts]).astype(np.float32)
