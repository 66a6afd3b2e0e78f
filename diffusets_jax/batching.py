"""Fixed-shape batches: every call of a jitted function sees one batch shape, so it compiles once.

The last batch of a set is padded with zeros and its padding dropped from the result; a batch
meant for several devices is first rounded up to a multiple of their number.
"""
from typing import Callable, Iterator

import numpy as np

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
