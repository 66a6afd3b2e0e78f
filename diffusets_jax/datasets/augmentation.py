"""Heart-rate augmentation by time stretching, for the diffusion stage's training latents.

PTB-XL's rates cluster at 60-90 bpm and each record shows one rate, so a small training set
ties the heart rate in c to each record's morphology and text. A stretched copy shows the same
record at another rate, which teaches the U-Net to read the rate from c.

How one copy is made (`stretch_ecg`):
1. the beats (`heart_rate.detect_beats`) give a whole number of cardiac cycles, first beat to
   last; they are repeated after the record's last beat, so a copy sped up to a higher rate
   still fills 10 s. A linear ramp on each repeat makes its baseline continue the previous one;
2. the signal is resampled in time by `factor` (cubic spline) and cut to 1024 samples, from a
   random start inside the real record when slowed down, from the start when sped up;
3. its heart rate is measured again with the same detector, so labels mean what they mean for
   real records.

The target rate stays in the original's rate band (below 60, 60-100, above 100 bpm), so text
such as 'sinus bradycardia' or 'sinus tachycardia' stays true of its copies.

A simplification, named as such: stretching shortens or widens every wave with the RR
interval (QRS and QT included), where a real change of rate mostly shortens diastole. It is
off unless `diffusion.stretch_copies` > 0, and only the training split is augmented.
"""
import numpy as np
import scipy.interpolate

from diffusets_jax.datasets import heart_rate
from diffusets_jax.datasets.preprocessing import NUM_SAMPLES

RATE_BANDS = (0.0, 60.0, 100.0, np.inf)  # bpm: bradycardia | normal | tachycardia


def rate_band(rate: float) -> tuple[float, float]:
  """The (low, high) bpm band holding `rate`."""
  upper = int(np.searchsorted(RATE_BANDS, rate, side='right'))
  upper = min(max(upper, 1), len(RATE_BANDS) - 1)
  return RATE_BANDS[upper - 1], RATE_BANDS[upper]


def target_factor(rate: float, max_factor: float, rng: np.random.Generator) -> float:
  """A time-stretch factor for a record at `rate` bpm: the new rate, rate / factor, is drawn
  log-uniformly within [rate / max_factor, rate * max_factor] and inside the rate's band."""
  low, high = rate_band(rate)
  new_low = max(rate / max_factor, low)
  new_high = min(rate * max_factor, high)
  new_rate = float(np.exp(rng.uniform(np.log(new_low), np.log(new_high))))
  return rate / new_rate


def beat_tiled(ecg: np.ndarray, beats: np.ndarray, length: int) -> np.ndarray:
  """`ecg` (n, leads) continued past its last beat by repeating the cycles between its first
  and last beat until it is at least `length` samples long."""
  first, last = int(beats[0]), int(beats[-1])
  cycles = ecg[first:last]
  # After each repeat the baseline should pick up where the record's last beat left it: a
  # ramp carries the repeat from ecg[last] (its start) back to its own level at its end.
  ramp = np.linspace(1.0, 0.0, len(cycles), endpoint=False)[:, None]
  repeat = cycles + ramp * (ecg[last] - ecg[first])
  pieces = [ecg[:last]]
  total = last
  while total < length:
    pieces.append(repeat)
    total += len(repeat)
  return np.concatenate(pieces)[:max(length, last)]


def stretch_ecg(ecg: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray | None:
  """`ecg` (1024, leads) played `factor` times slower (factor < 1: faster), 1024 samples long;
  None where fewer than three beats are detected (no whole cycle to repeat)."""
  beats = np.flatnonzero(heart_rate.detect_beats(np.asarray(ecg, np.float64)[None])[0])
  if len(beats) < 3:
    return None
  needed = int(np.ceil(NUM_SAMPLES / factor)) + 2  # source samples the output spans
  source = ecg if needed <= len(ecg) else beat_tiled(ecg, beats, needed)
  start = rng.uniform(0, len(ecg) - needed) if needed < len(ecg) else 0.0
  positions = start + np.arange(NUM_SAMPLES) / factor
  spline = scipy.interpolate.CubicSpline(np.arange(len(source)), source, axis=0)
  return spline(positions).astype(np.float32)


class TimeStretched:
  """A data source with `copies` time-stretched versions after every record of `source`:
  index i < n is record i as it is; i = n * k + j is copy k of record j (seeded by i, so the
  same index reads the same ECG). A copy whose record has too few beats, or whose measured rate
  is undefined, is the original record unchanged. Record ids of copies end in '#stretch<k>'.
  """

  def __init__(self, source, copies: int, max_factor: float, seed: int):
    if copies < 0:
      raise ValueError(f'stretch copies must be non-negative, got {copies}')
    if max_factor <= 1.0:
      raise ValueError(f'stretch max factor must be above 1, got {max_factor}')
    self.source, self.copies, self.max_factor, self.seed = source, copies, max_factor, seed

  def __len__(self):
    return len(self.source) * (1 + self.copies)

  def __getitems__(self, index):
    index = np.asarray(index, np.int64)
    n = len(self.source)
    if len(index) and (index.min() < 0 or index.max() >= len(self)):
      raise IndexError(f'index out of range for {len(self)} examples')
    examples = self.source.__getitems__([int(i) for i in index % n])
    return [self.stretched(example, int(i) // n, int(i)) if i >= n else example
            for example, i in zip(examples, index)]

  def stretched(self, example: dict, copy: int, i: int) -> dict:
    rate = float(example['heart_rate'])
    if not np.isfinite(rate):
      return example
    rng = np.random.default_rng([self.seed, i])
    ecg = stretch_ecg(example['ecg'], target_factor(rate, self.max_factor, rng), rng)
    new_rate = heart_rate.heart_rate(ecg) if ecg is not None else np.nan
    if not np.isfinite(new_rate):
      return example
    record_id = example['record_id'].decode() + f'#stretch{copy}'
    return dict(example, ecg=ecg, heart_rate=np.float32(new_rate),
                record_id=record_id.encode())
