"""Batches for training: deterministic in the step number, so a resumed run sees the same data,
and shaped (devices, per_device_batch, ...) for `pmap`.
"""
from pathlib import Path

import numpy as np
import jax
import tensorflow_datasets as tfds

from diffusets_jax.datasets import ludb, mimic_iv_ecg, ptbxl


DATASETS = ('ludb', 'ptbxl', 'mimic_iv_ecg')


def build(data_config):
  """Builds (once) the config's dataset under data.tfds_dir from data.manual_dir."""
  if data_config.name not in DATASETS:
    raise ValueError(f'unknown dataset {data_config.name!r}; available: {list(DATASETS)}')
  if data_config.name == 'ludb':
    return ludb.build(data_config.tfds_dir, data_config.manual_dir)
  builder_class = dict(ptbxl=ptbxl.Ptbxl, mimic_iv_ecg=mimic_iv_ecg.MimicIvEcg)[data_config.name]
  builder = builder_class(data_dir=str(data_config.tfds_dir), file_format='array_record')
  builder.num_workers = data_config.num_workers
  if data_config.name == 'mimic_iv_ecg':
    builder.patients_csv = data_config.patients_csv
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(Path(data_config.manual_dir).expanduser())))
  return builder


def open_split(data_config, split: str):
  """Random-access ArrayRecord source of one split (no TensorFlow at read time); builds once."""
  return build(data_config).as_data_source(split)


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


def process_rows(global_batch_size: int) -> slice:
  """The rows of a global batch this process reads and feeds to its local devices: process i
  of P takes the i-th contiguous 1/P (so the devices, in process order, see the global batch)."""
  devices = jax.device_count()
  if global_batch_size % devices:
    raise ValueError(f'batch of {global_batch_size} does not split over {devices} devices; '
                     f'use a batch size divisible by {devices}')
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def read_rows(source, index, key: str) -> np.ndarray:
  """Field `key` of the examples at `index` (in that order), stacked: a random-access read of
  only the rows a batch needs, so no split is ever held in memory whole."""
  return np.stack([example[key] for example in source.__getitems__([int(i) for i in index])])


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
