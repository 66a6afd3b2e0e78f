"""Fixed-shape batches: every call of a jitted function sees one batch shape, so it compiles once;
and the training batches (which rows, in which order, split over processes and devices).

The last batch of a set is padded with zeros and its padding dropped from the result; a batch
meant for several devices is first rounded up to a multiple of their number.
"""
from typing import Callable, Iterator

import numpy as np
import jax

# The name of the device axis of every pmap and sharded batch.
AXIS = 'batch'


def round_to_devices(batch_size: int, num_devices: int) -> int:
  """batch_size rounded up to a multiple of num_devices (each device gets an equal share)."""
  if batch_size < 1:
    raise ValueError(f'batch size must be at least 1, got {batch_size}')
  return -(-batch_size // num_devices) * num_devices


def pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
  """rows (k <= size, ...) with zero rows of their dtype appended up to `size`."""
  rows = np.asarray(rows)
  padded = np.zeros((size,) + rows.shape[1:], rows.dtype)
  padded[:len(rows)] = rows
  return padded


def fixed_batches(n: int, batch_size: int) -> Iterator[tuple[int, slice]]:
  """(batch number, the slice of range(n) it covers), batch_size at a time."""
  for number, start in enumerate(range(0, n, batch_size)):
    yield number, slice(start, min(start + batch_size, n))


def map_batches(fn: Callable, inputs, batch_size: int) -> np.ndarray:
  """fn over `inputs` (one array, or a tuple of arrays of equal length) batch_size rows at a
  time, the last batch zero-padded: fn(*padded batches) -> (batch_size, ...), and the results of
  the real rows concatenated. fn must treat rows independently."""
  arrays = inputs if isinstance(inputs, tuple) else (inputs,)
  n = len(arrays[0])
  out = [np.asarray(fn(*(pad_rows(a[part], batch_size) for a in arrays)))[:part.stop - part.start]
         for _, part in fixed_batches(n, batch_size)]
  return np.concatenate(out)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise ValueError(f'batch size {batch_size} is larger than the {num_examples} training '
                     f'examples; lower it (e.g. --config.vae.batch_size={num_examples})')
  return num_examples // batch_size


def batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Example indices of global batch `step`: a fresh permutation each epoch, remainder dropped.
  A function of the step alone, so a resumed run sees the batches it would have seen."""
  per_epoch = steps_per_epoch(num_examples, batch_size)
  epoch, position = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return order[position * batch_size:(position + 1) * batch_size]


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


def shard(tree, num_devices: int | None = None):
  """(global_batch, ...) arrays -> (devices, global_batch / devices, ...)."""
  num_devices = num_devices or jax.local_device_count()

  def reshape(x):
    if x.shape[0] % num_devices:
      raise ValueError(f'batch of {x.shape[0]} does not split over {num_devices} devices; '
                       f'use a batch size divisible by {num_devices}')
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return jax.tree_util.tree_map(reshape, tree)
