"""Reading raw 12-lead WFDB records for the dataset builders, in parallel and streaming.

`read_ecg` turns one record into the model's input: standard lead order, NaN -> 0, FFT-resampled
to 1024 samples (10 s at 102.4 Hz, whatever the source rate), mV. Records that cannot become
that raise `SkippedRecord` with the reason, which the builders count and log.
"""
import collections
import concurrent.futures
import functools
import itertools
import logging
import multiprocessing
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
import wfdb

from diffusets_jax.datasets import preprocessing

log = logging.getLogger(__name__)
DURATION_TOLERANCE_S = 0.05


class SkippedRecord(Exception):
  """A record the builder leaves out; str(error) is the reason."""


def read_ecg(path) -> tuple[np.ndarray, int]:
  """WFDB record (path without extension) -> ((1024, 12) float32 mV, NaN samples replaced).

  Any sampling rate is accepted for a 10 s record (it is resampled); fewer than the 12 standard
  leads, another duration, a missing or unreadable file, or a lead with no finite sample is a
  SkippedRecord.
  """
  try:
    record = wfdb.rdrecord(str(path))
  except FileNotFoundError as error:
    raise SkippedRecord(f'missing file: {error.filename or path}') from None
  except Exception as error:  # wfdb raises many types on corrupt headers and data
    raise SkippedRecord(f'unreadable ({type(error).__name__}: {error})') from None
  if record.p_signal is None or record.p_signal.ndim != 2:
    raise SkippedRecord('no physical signal')
  try:
    order = preprocessing.standard_lead_order(record.sig_name)
  except ValueError as error:
    raise SkippedRecord(f'fewer than 12 standard leads: {error}') from None
  signal = record.p_signal[:, order].astype(np.float64)
  duration = signal.shape[0] / record.fs
  if abs(duration - preprocessing.DURATION_S) > DURATION_TOLERANCE_S:
    raise SkippedRecord(f'expected {preprocessing.DURATION_S:g} s, got {duration:.2f} s '
                        f'({signal.shape[0]} samples at {record.fs:g} Hz)')
  empty = [preprocessing.STANDARD_LEADS[i] for i in np.flatnonzero(
      ~np.isfinite(signal).any(axis=0))]
  if empty:
    raise SkippedRecord(f'leads with no finite sample: {empty}')
  signal, nan_count = preprocessing.replace_nans(signal)
  return preprocessing.resample(signal), nan_count


def check_manual_files(root, required: dict[str, str], instructions: str) -> Path:
  """Raises FileNotFoundError listing every missing `required` path (relative to root, with
  what it is) and the instructions; returns root as a Path."""
  if not root:
    raise FileNotFoundError(f'no manual_dir given. {instructions}')
  root = Path(root).expanduser()
  missing = [f'  {root / name}  ({what})' for name, what in required.items()
             if not (root / name).exists()]
  if missing:
    raise FileNotFoundError('missing from the manual dir:\n' + '\n'.join(missing) +
                            f'\n{instructions}')
  return root


def default_workers(num_workers: int) -> int:
  return num_workers if num_workers > 0 else (os.cpu_count() or 1)


def parallel_map(fn, items, num_workers: int, chunk_size: int = 256):
  """Yields fn(item) for each item, in order, computed by `num_workers` processes.

  Items are consumed `chunk_size * num_workers` at a time, so memory holds one chunk of results
  however many items there are. num_workers 1 runs in this process (no pool).
  """
  items = iter(items)
  if num_workers == 1:
    yield from map(fn, items)
    return
  pool = worker_pool(num_workers)
  while chunk := list(itertools.islice(items, chunk_size * num_workers)):
    yield from pool.map(fn, chunk, chunksize=max(1, chunk_size // 4))


@functools.cache
def worker_pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """One pool per size for the life of the process: starting workers costs seconds (imports),
  so the splits of a build share them. Shut down at exit by concurrent.futures."""
  # spawn, not fork: the parent may hold JAX or TensorFlow threads a fork would copy badly.
  return concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=multiprocessing.get_context('spawn'))


class SkipCounter:
  """Counts skipped records and rows by reason; logs a summary (with a few examples)."""

  def __init__(self, dataset: str, split: str):
    self.dataset, self.split = dataset, split
    self.reasons = collections.Counter()
    self.examples = collections.defaultdict(list)

  def skip(self, record_id: str, reason: str) -> None:
    kind = reason.split(':', 1)[0].split(' (', 1)[0]
    self.reasons[kind] += 1
    if len(self.examples[kind]) < 3:
      self.examples[kind].append(f'{record_id} ({reason})')
    log.debug('%s %s: skipping %s: %s', self.dataset, self.split, record_id, reason)

  def total(self) -> int:
    return sum(self.reasons.values())

  def log_summary(self) -> None:
    if not self.reasons:
      return
    lines = [f'{count} x {kind}; e.g. {", ".join(self.examples[kind])}'
             for kind, count in self.reasons.most_common()]
    log.warning('%s %s: skipped %d record(s):\n  %s', self.dataset, self.split, self.total(),
                '\n  '.join(lines))


def generate_examples(dataset: str, split: str, read_example, root, rows, num_workers: int):
  """A builder's `_generate_examples`: read_example((root, row)) for every row in parallel,
  yielding (key, example) and counting the records it skips."""
  skips = SkipCounter(dataset, split)
  tasks = ((str(root), row) for row in rows)
  for key, result in parallel_map(read_example, tasks, default_workers(num_workers)):
    if isinstance(result, SkippedRecord):
      skips.skip(key, str(result))
    else:
      yield key, result
  skips.log_summary()


def ecg_features(**extra) -> tfds.features.FeaturesDict:
  """The fields every ECG dataset has (what training reads), plus a dataset's own `extra`."""
  return tfds.features.FeaturesDict(dict(
      record_id=tfds.features.Text(),
      ecg=tfds.features.Tensor(shape=(preprocessing.NUM_SAMPLES, 12), dtype=np.float32),
      reports=tfds.features.Sequence(tfds.features.Text()),
      age=np.float32,           # years, NaN if unknown
      sex=tfds.features.Text(),  # 'M', 'F', '' if unknown
      heart_rate=np.float32,    # bpm
      nan_count=np.int32,       # NaN samples replaced by 0
      **extra))
