"""Augmentation of the diffusion stage's training latents: time-stretched and phase-shifted
copies of each training record. Both are off by default and in the paper config, and only the
training split is augmented.

Time stretching (`diffusion.stretch_copies`). PTB-XL's rates cluster at 60-90 bpm and each
record shows one rate, so a small training set ties the heart rate in c to each record's
morphology and text. A stretched copy shows the same record at another rate, which teaches the
U-Net to read the rate from c. How one copy is made (`stretch_ecg`):
1. the beats (`heart_rate.detect_beats`) give a whole number of cardiac cycles, first beat to
   last; they are repeated after the record's last beat, so a copy sped up to a higher rate
   still fills 10 s. A linear ramp on each repeat makes its baseline continue the previous one;
2. the signal is resampled in time by `factor` (cubic spline) and cut to 1024 samples, from a
   random start inside the real record when slowed down, from the start when sped up;
3. its heart rate is measured again with the same detector, so labels mean what they mean for
   real records.
The target rate stays in the original's rate band (below 60, 60-100, above 100 bpm), so text
such as 'sinus bradycardia' or 'sinus tachycardia' stays true of its copies. A simplification,
named as such: stretching shortens or widens every wave with the RR interval (QRS and QT
included), where a real change of rate mostly shortens diastole.

Phase shifting (`diffusion.shift_copies`). A 10 s record fixes where its beats fall, so 678
records show the U-Net 678 beat placements. A shifted copy (`shift_ecg`) starts 1 to one median
RR interval later in the record and is continued past its end by the record's own whole cycles
(as above, baseline carried on): the same waves, rate, rhythm and text, with the beats
elsewhere in the window. Nothing is resampled, so no wave changes shape. Its rate is measured
again. A simplification, named as such: the cycles after the record's end repeat earlier ones,
so the copy's last beats are not new beats.
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


def shift_ecg(ecg: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
  """`ecg` (1024, leads) seen from 1 to one median RR interval later (a whole number of samples,
  uniform), its end continued by its own cycles; None where fewer than three beats are
  detected."""
  beats = np.flatnonzero(heart_rate.detect_beats(np.asarray(ecg, np.float64)[None])[0])
  if len(beats) < 3:
    return None
  shift = int(rng.integers(1, int(np.median(np.diff(beats))) + 1))
  source = beat_tiled(np.asarray(ecg, np.float32), beats, NUM_SAMPLES + shift)
  return np.ascontiguousarray(source[shift:shift + NUM_SAMPLES], np.float32)


class AugmentedCopies:
  """A data source with `copies` augmented versions after every record of `source`: index
  i < n is record i as it is; i = n * k + j is copy k of record j (seeded by i, so the same
  index reads the same ECG). A copy whose record has too few beats, or whose measured rate is
  undefined, is the original record unchanged. Record ids of copies end in '#<tag><k>'.
  Subclasses say how one copy is made (`augment`)."""

  tag = 'copy'

  def __init__(self, source, copies: int, seed: int):
    if copies < 0:
      raise ValueError(f'{self.tag} copies must be non-negative, got {copies}')
    self.source, self.copies, self.seed = source, copies, seed

  def augment(self, example: dict, rng: np.random.Generator) -> np.ndarray | None:
    raise NotImplementedError

  def __len__(self):
    return len(self.source) * (1 + self.copies)

  def __getitems__(self, index):
    index = np.asarray(index, np.int64)
    n = len(self.source)
    if len(index) and (index.min() < 0 or index.max() >= len(self)):
      raise IndexError(f'index out of range for {len(self)} examples')
    examples = self.source.__getitems__([int(i) for i in index % n])
    return [self.copied(example, int(i) // n, int(i)) if i >= n else example
            for example, i in zip(examples, index)]

  def copied(self, example: dict, copy: int, i: int) -> dict:
    if not np.isfinite(float(example['heart_rate'])):
      return example
    ecg = self.augment(example, np.random.default_rng([self.seed, i]))
    new_rate = heart_rate.heart_rate(ecg) if ecg is not None else np.nan
    if not np.isfinite(new_rate):
      return example
    record_id = example['record_id'].decode() + f'#{self.tag}{copy}'
    return dict(example, ecg=ecg, heart_rate=np.float32(new_rate),
                record_id=record_id.encode())


class TimeStretched(AugmentedCopies):
  """Copies played slower or faster (`stretch_ecg`), the new rate within the original's band."""

  tag = 'stretch'

  def __init__(self, source, copies: int, max_factor: float, seed: int):
    if max_factor <= 1.0:
      raise ValueError(f'stretch max factor must be above 1, got {max_factor}')
    super().__init__(source, copies, seed)
    self.max_factor = max_factor

  def augment(self, example, rng):
    factor = target_factor(float(example['heart_rate']), self.max_factor, rng)
    return stretch_ecg(example['ecg'], factor, rng)


class PhaseShifted(AugmentedCopies):
  """Copies with the beats elsewhere in the window (`shift_ecg`)."""

  tag = 'shift'

  def augment(self, example, rng):
    return shift_ecg(example['ecg'], rng)


def with_copies(source, stretch_copies: int, stretch_max_factor: float, shift_copies: int,
                seed: int):
  """`source` with its training copies as the diffusion stage's latents hold them: the stretched
  copies after the records, then shifted copies of all of those. Each kind draws from its own
  seed, derived from `seed` (the config's)."""
  if stretch_copies:
    source = TimeStretched(source, stretch_copies, stretch_max_factor, seed + 3)
  if shift_copies:
    source = PhaseShifted(source, shift_copies, seed + 4)
  return source
