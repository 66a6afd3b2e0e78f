"""Batches for training: deterministic in the step number, so a resumed run sees the same data,
and shaped (devices, per_device_batch, ...) for `pmap`.
"""
import numpy as np
import jax

from diffusets_jax.datasets import ludb


def open_split(data_config, split: str):
  """Random-access ArrayRecord source of one split (no TensorFlow at read time); builds once."""
  if data_config.name != 'ludb':
    raise ValueError(f"unknown dataset {data_config.name!r}; available: ['ludb']")
  return ludb.build(data_config.tfds_dir, data_config.manual_dir).as_data_source(split)


def read_all(source, keys=('ecg', 'age', 'sex', 'reports', 'heart_rate', 'record_id')) -> dict:
  """Every example of a (small) source as stacked numpy arrays / lists, in source order."""
  examples = source.__getitems__(list(range(len(source))))
  out = {}
  for key in keys:
    values = [ex[key] for ex in examples]
    if key in ('sex', 'record_id'):
      out[key] = [v.decode() for v in values]
    elif key == 'reports':
      out[key] = [[r.decode() for r in v] for v in values]
    else:
      out[key] = np.stack(values)
  return out


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise ValueError(f'batch size {batch_size} is larger than the {num_examples} training '
                     f'examples; lower it (e.g. --config.vae.batch_size={num_examples})')
  return num_examples // batch_size


def batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Example indices of global batch `step`: a fresh permutation each epoch, remainder dropped."""
  per_epoch = steps_per_epoch(num_examples, batch_size)
  epoch, position = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return order[position * batch_size:(position + 1) * batch_size]


def shard(tree, num_devices: int | None = None):
  """(global_batch, ...) arrays -> (devices, global_batch / devices, ...)."""
  num_devices = num_devices or jax.local_device_count()

  def reshape(x):
    if x.shape[0] % num_devices:
      raise ValueError(f'batch of {x.shape[0]} does not split over {num_devices} devices; '
                       f'use a batch size divisible by {num_devices}')
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return jax.tree_util.tree_map(reshape, tree)
