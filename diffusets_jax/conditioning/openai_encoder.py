"""OpenAI embeddings: the paper's text encoder (`text-embedding-ada-002`, 1536-d).

The API key is read from the OPENAI_API_KEY environment variable when the first request is made;
it is never stored, logged or written to a config. Requests are batched, and retried with
exponential backoff on rate limits (429), time-outs, connection errors, 5xx responses and
malformed responses.
"""
import logging
import os
import random
import time
from typing import Sequence

import numpy as np

from diffusets_jax.conditioning.prompts import check_prompts

log = logging.getLogger(__name__)

NATIVE_DIMS = {
    'text-embedding-ada-002': 1536,
    'text-embedding-3-small': 1536,
    'text-embedding-3-large': 3072,
}
# Models that accept a `dimensions` request parameter (shortened, still unit-norm embeddings).
SHORTENABLE = ('text-embedding-3-small', 'text-embedding-3-large')
# The models take at most 8191 tokens. A BPE token covers at least one UTF-8 byte, so 8191
# bytes is a bound that needs no tokenizer (conservative: real reports are far shorter).
MAX_PROMPT_BYTES = 8191
API_KEY_VARIABLE = 'OPENAI_API_KEY'


class MissingAPIKeyError(RuntimeError):
  pass


class MalformedResponseError(ValueError):
  """A 200 response that is not the embeddings the request asked for."""


def api_key() -> str:
  key = os.environ.get(API_KEY_VARIABLE, '').strip()
  if not key:
    raise MissingAPIKeyError(
        f'the openai text encoder needs an API key: set {API_KEY_VARIABLE} in the environment '
        f'(or run offline with --config.text.encoder=minilm)')
  return key


def native_dim(model: str) -> int | None:
  return NATIVE_DIMS.get(model)


def truncate_prompt(prompt: str) -> str:
  data = prompt.encode('utf-8')
  if len(data) <= MAX_PROMPT_BYTES:
    return prompt
  log.warning('prompt of %d bytes truncated to %d for the OpenAI token limit: %.80r...',
              len(data), MAX_PROMPT_BYTES, prompt)
  return data[:MAX_PROMPT_BYTES].decode('utf-8', errors='ignore')


class OpenAIEncoder:
  """TextEncoder over the OpenAI embeddings endpoint (or any server that speaks it: base_url)."""
  name = 'openai'

  def __init__(self, model: str = 'text-embedding-ada-002', dim: int = 0,
               batch_size: int = 512, base_url: str = '', max_retries: int = 6,
               timeout_seconds: float = 60.0, backoff_seconds: float = 1.0):
    native = native_dim(model)
    if not dim and native is None:
      raise ValueError(f'unknown OpenAI embedding model {model!r}: set text.dim to its width '
                       f'(known: {sorted(NATIVE_DIMS)})')
    dim = dim or native
    if native is not None and dim != native and model not in SHORTENABLE:
      raise ValueError(f'{model} embeddings are {native}-d; text.dim={dim} is only possible '
                       f'with {" or ".join(SHORTENABLE)}')
    if not 1 <= batch_size <= 2048:
      raise ValueError(f'OpenAI batch size must be 1-2048 prompts, got {batch_size}')
    self.model, self.dim = model, dim
    self.batch_size = batch_size
    self.base_url = base_url or None
    self.max_retries = max_retries
    self.timeout_seconds = timeout_seconds
    self.backoff_seconds = backoff_seconds
    self._client = None

  def _get_client(self):
    if self._client is None:
      import openai
      # Retries are ours (below), so that every failure is counted and reported the same way.
      self._client = openai.OpenAI(api_key=api_key(), base_url=self.base_url, max_retries=0,
                                   timeout=self.timeout_seconds)
    return self._client

  def _request(self, batch: list[str]) -> np.ndarray:
    extra = {'dimensions': self.dim} if self.dim != native_dim(self.model) else {}
    response = self._get_client().embeddings.create(
        model=self.model, input=batch, encoding_format='float', **extra)
    rows = sorted(response.data, key=lambda item: item.index)
    vectors = np.asarray([row.embedding for row in rows], np.float32)
    if [row.index for row in rows] != list(range(len(batch))) or vectors.shape != (
        len(batch), self.dim) or not np.all(np.isfinite(vectors)):
      raise MalformedResponseError(
          f'expected {len(batch)} finite {self.dim}-d embeddings indexed 0..{len(batch) - 1}, '
          f'got array of shape {vectors.shape}')
    return vectors

  def _request_with_retries(self, batch: list[str]) -> np.ndarray:
    import openai
    retryable = (openai.RateLimitError, openai.APIConnectionError, openai.InternalServerError,
                 openai.APIResponseValidationError, ValueError)  # ValueError: bad JSON or shape
    for attempt in range(self.max_retries + 1):
      try:
        return self._request(batch)
      except openai.AuthenticationError as error:
        raise RuntimeError(f'the OpenAI API rejected the key in {API_KEY_VARIABLE} '
                           f'(HTTP {error.status_code})') from None
      except retryable as error:
        reason = _describe(error)
        if attempt == self.max_retries:
          raise RuntimeError(f'OpenAI embeddings request failed after {attempt + 1} attempts: '
                             f'{reason}') from error
        delay = min(60.0, self.backoff_seconds * 2 ** attempt) * (0.5 + random.random() / 2)
        log.warning('OpenAI embeddings: %s; retry %d/%d in %.1f s', reason, attempt + 1,
                    self.max_retries, delay)
        time.sleep(delay)
      except openai.APIStatusError as error:
        raise RuntimeError(f'OpenAI embeddings request refused: {_describe(error)}') from None

  def encode(self, prompts: Sequence[str]) -> np.ndarray:
    check_prompts(prompts)
    prompts = [truncate_prompt(p) for p in prompts]
    out = np.zeros((len(prompts), self.dim), np.float32)
    for start in range(0, len(prompts), self.batch_size):
      batch = prompts[start:start + self.batch_size]
      out[start:start + len(batch)] = self._request_with_retries(batch)
    return out


def _describe(error: Exception) -> str:
  """The status and the server's message, never the request headers (they hold the key)."""
  status = getattr(error, 'status_code', None)
  kind = type(error).__name__
  message = str(getattr(error, 'message', '') or error)[:300]
  return f'{kind} (HTTP {status}): {message}' if status else f'{kind}: {message}'
