"""A trained CLIP model (train.py --stage clip) as a feature extractor for the evaluation."""
import json
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

from diffusets_jax.models import factory
from diffusets_jax.training import checkpoints, trainer

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
    config = checkpoints.load_config(workdir)
    if not (Path(workdir) / 'clip' / 'checkpoints').exists():
      raise FileNotFoundError(
          f'{workdir} has no CLIP model, which the diagnostic metrics need; train it with '
          f'python train.py --config <its config> --workdir {workdir} --stage clip, or point '
          f'--clip_workdir at a workdir that has one')
    record = trainer.conditioning_path(workdir, 'clip')
    state = checkpoints.restore_state(workdir, 'clip', trainer.abstract_state(config, 'clip'))
    if not record.exists():
      raise FileNotFoundError(f'{record} not found: the clip stage of {workdir} did not finish '
                              f'writing; run train.py --stage clip again')
    text = json.loads(record.read_text())['text']
    return cls(config, {'params': state.params, 'batch_stats': state.batch_stats}, text)

  def _batched(self, fn, inputs) -> np.ndarray:
    inputs = np.asarray(inputs, np.float32)
    out = []
    for start in range(0, len(inputs), FEATURE_BATCH):
      chunk = inputs[start:start + FEATURE_BATCH]
      padded = np.zeros((FEATURE_BATCH,) + chunk.shape[1:], np.float32)
      padded[:len(chunk)] = chunk
      out.append(np.asarray(fn(self.variables, jnp.asarray(padded)))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, self.config.clip.feature_dim), np.float32)

  def ecg_features(self, ecg) -> np.ndarray:
    """(n, 1024, 12) mV -> (n, feature_dim) unnormalised features."""
    return self._batched(self._ecg, ecg)

  def text_features(self, text_embedding) -> np.ndarray:
    """(n, d_text) embeddings -> (n, feature_dim) unnormalised features."""
    return self._batched(self._text, text_embedding)
