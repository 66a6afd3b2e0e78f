"""A trained CLIP model (train.py --stage clip) as a feature extractor for the evaluation."""
import numpy as np
import jax
import jax.numpy as jnp

from diffusets_jax import batching
from diffusets_jax.models import factory
from diffusets_jax.store import open_clip

FEATURE_BATCH = 128  # ECGs per forward pass; the last batch is padded (one compile)


class ClipFeatures:
  """ECG and text features of a trained CLIP model, in inference mode (BatchNorm running stats).

  `text` is the record of what it was trained with: text encoder, model, width, prompt template.
  """

  def __init__(self, config, variables, text: dict):
    self.config = config
    self.text = text
    self.model = factory.make_clip(config)
    self.variables = variables
    self._ecg = jax.jit(lambda v, x: self.model.apply(v, x, method=self.model.encode_ecg))
    self._text = jax.jit(lambda v, t: self.model.apply(v, t, method=self.model.encode_text))

  @classmethod
  def from_workdir(cls, workdir) -> 'ClipFeatures':
    return cls(*open_clip(workdir))

  def _batched(self, fn, inputs) -> np.ndarray:
    if not len(inputs):
      return np.zeros((0, self.config.clip.feature_dim), np.float32)
    return batching.map_batches(lambda rows: fn(self.variables, jnp.asarray(rows)),
                                np.asarray(inputs, np.float32), FEATURE_BATCH)

  def ecg_features(self, ecg) -> np.ndarray:
    """(n, 1024, 12) mV -> (n, feature_dim) unnormalised features."""
    return self._batched(self._ecg, ecg)

  def text_features(self, text_embedding) -> np.ndarray:
    """(n, d_text) embeddings -> (n, feature_dim) unnormalised features."""
    return self._batched(self._text, text_embedding)
