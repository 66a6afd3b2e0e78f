"""Training-latent augmentation: time stretching and phase shifting (datasets/augmentation.py)."""
import numpy as np
import pytest
import scipy.signal

from configs import diffusets
from diffusets_jax.datasets import augmentation, heart_rate
from diffusets_jax.datasets.preprocessing import NUM_SAMPLES, SAMPLE_RATE_HZ


def synthetic_ecg(rate_bpm: float, seed: int = 0) -> np.ndarray:
  """(1024, 12): narrow QRS spikes and broad T waves at a regular rate, on a slow baseline."""
  t = np.arange(NUM_SAMPLES) / SAMPLE_RATE_HZ
  rr = 60.0 / rate_bpm
  beats = np.arange(0.3, t[-1], rr)
  qrs = sum(np.exp(-0.5 * ((t - b) / 0.015) ** 2) for b in beats)
  t_wave = sum(0.3 * np.exp(-0.5 * ((t - b - 0.3) / 0.05) ** 2) for b in beats)
  baseline = 0.1 * np.sin(2 * np.pi * 0.15 * t)
  gains = np.random.default_rng(seed).uniform(0.5, 1.5, 12)
  return ((qrs + t_wave + baseline)[:, None] * gains).astype(np.float32)


class ListSource:
  def __init__(self, examples):
    self.examples = examples

  def __len__(self):
    return len(self.examples)

  def __getitems__(self, index):
    return [self.examples[i] for i in index]


@pytest.mark.parametrize('factor', [0.75, 0.9, 1.2, 1.35])
def test_stretch_changes_the_rate_by_the_factor(factor):
  ecg = synthetic_ecg(75.0)
  stretched = augmentation.stretch_ecg(ecg, factor, np.random.default_rng(0))
  assert stretched.shape == (NUM_SAMPLES, 12) and stretched.dtype == np.float32
  assert heart_rate.heart_rate(stretched) == pytest.approx(75.0 / factor, rel=0.02)


def test_sped_up_copy_has_no_step_where_cycles_repeat():
  ecg = synthetic_ecg(62.0)
  stretched = augmentation.stretch_ecg(ecg, 0.75, np.random.default_rng(0))
  # Largest sample-to-sample jump, with and without the repeats (the spikes set both).
  assert np.abs(np.diff(stretched, axis=0)).max() < 1.5 * np.abs(np.diff(ecg, axis=0)).max() / 0.75
  # Every beat of the sped-up copy is there, one RR apart: none lost or doubled at a seam.
  spikes = scipy.signal.find_peaks(stretched[:, 0], height=0.5 * stretched[:, 0].max())[0]
  assert len(spikes) == 14 and np.ptp(np.diff(spikes)) <= 1


def test_flat_record_cannot_be_stretched():
  assert augmentation.stretch_ecg(np.zeros((NUM_SAMPLES, 12), np.float32), 1.2,
                                  np.random.default_rng(0)) is None


@pytest.mark.parametrize('rate', [35.0, 59.0, 61.0, 80.0, 99.5, 101.0, 150.0])
def test_new_rate_stays_in_its_band_and_range(rate):
  low, high = augmentation.rate_band(rate)
  assert low <= rate < high
  rng = np.random.default_rng(0)
  for _ in range(200):
    new_rate = rate / augmentation.target_factor(rate, 1.35, rng)
    assert low <= new_rate <= high
    assert rate / 1.35 - 1e-9 <= new_rate <= rate * 1.35 + 1e-9


def test_time_stretched_source():
  examples = [dict(ecg=synthetic_ecg(rate, seed), heart_rate=np.float32(rate),
                   record_id=str(seed).encode(), reports=[b'Sinus rhythm'])
              for seed, rate in enumerate([65.0, 80.0, 95.0])]
  for example in examples:  # labels as the builders make them: the detector's rate
    example['heart_rate'] = np.float32(heart_rate.heart_rate(example['ecg']))
  source = augmentation.TimeStretched(ListSource(examples), copies=2, max_factor=1.35, seed=0)
  assert len(source) == 9
  first = source.__getitems__(list(range(9)))
  again = source.__getitems__([8, 3, 0])
  for i, example in enumerate(first[:3]):  # the originals, unchanged
    assert example is examples[i]
  for i, example in enumerate(first[3:], start=3):
    original = examples[i % 3]
    assert example['record_id'] == original['record_id'] + f'#stretch{i // 3}'.encode()
    assert example['reports'] == original['reports']
    assert example['heart_rate'] == pytest.approx(heart_rate.heart_rate(example['ecg']))
    assert example['heart_rate'] != pytest.approx(original['heart_rate'], abs=0.5)
    assert augmentation.rate_band(example['heart_rate']) == \
        augmentation.rate_band(original['heart_rate'])
  np.testing.assert_array_equal(again[0]['ecg'], first[8]['ecg'])  # same index, same copy
  assert not np.array_equal(first[3]['ecg'], first[6]['ecg'])  # copies differ
  with pytest.raises(IndexError, match='out of range'):
    source.__getitems__([9])
  with pytest.raises(ValueError, match='max factor'):
    augmentation.TimeStretched(ListSource(examples), copies=1, max_factor=1.0, seed=0)


def spike_positions(ecg: np.ndarray) -> np.ndarray:
  return scipy.signal.find_peaks(ecg[:, 0], height=0.5 * ecg[:, 0].max())[0]


@pytest.mark.parametrize('rate, seed', [(48.0, 0), (75.0, 1), (75.0, 2), (130.0, 3)])
def test_shift_moves_the_beats_and_keeps_rate_and_waves(rate, seed):
  ecg = synthetic_ecg(rate, seed)
  shifted = augmentation.shift_ecg(ecg, np.random.default_rng(seed))
  assert shifted.shape == (NUM_SAMPLES, 12) and shifted.dtype == np.float32
  original, moved = spike_positions(ecg), spike_positions(shifted)
  rr = int(np.median(np.diff(original)))
  # The same spacing throughout, the seam included: no beat lost or doubled.
  assert np.ptp(np.diff(moved)) <= 1 and abs(np.median(np.diff(moved)) - rr) <= 1
  assert heart_rate.heart_rate(shifted) == pytest.approx(heart_rate.heart_rate(ecg), rel=0.01)
  # Unresampled: before the seam the copy is the record itself, `shift` samples on.
  shift = int(original[1] - moved[moved < original[1]].max())
  assert 1 <= shift <= rr
  last_beat = np.flatnonzero(heart_rate.detect_beats(ecg.astype(np.float64)[None])[0])[-1]
  np.testing.assert_array_equal(shifted[:last_beat - shift], ecg[shift:last_beat])
  # The baseline is carried over the seam: no jump larger than the record's own steepest.
  assert np.abs(np.diff(shifted, axis=0)).max() <= 1.05 * np.abs(np.diff(ecg, axis=0)).max()


def test_shifts_cover_a_whole_cycle():
  ecg = synthetic_ecg(60.0)
  rr = int(np.median(np.diff(spike_positions(ecg))))
  rng = np.random.default_rng(0)
  first_beats = [spike_positions(augmentation.shift_ecg(ecg, rng))[0] for _ in range(60)]
  # Over 60 copies the first beat lands all over one RR interval, not at a few places.
  assert np.ptp(first_beats) > 0.8 * rr and len(set(first_beats)) > 30


def test_flat_record_cannot_be_shifted():
  assert augmentation.shift_ecg(np.zeros((NUM_SAMPLES, 12), np.float32),
                                np.random.default_rng(0)) is None


def test_phase_shifted_source():
  examples = [dict(ecg=synthetic_ecg(rate, seed), heart_rate=np.float32(0.0),
                   record_id=str(seed).encode(), reports=[b'Sinus rhythm'])
              for seed, rate in enumerate([65.0, 80.0])]
  for example in examples:
    example['heart_rate'] = np.float32(heart_rate.heart_rate(example['ecg']))
  flat = dict(ecg=np.zeros((NUM_SAMPLES, 12), np.float32), heart_rate=np.float32(70.0),
              record_id=b'flat', reports=[b'Normal ECG'])
  source = augmentation.PhaseShifted(ListSource(examples + [flat]), copies=2, seed=0)
  assert len(source) == 9
  first = source.__getitems__(list(range(9)))
  for i, example in enumerate(first[3:], start=3):
    original = first[i % 3]
    if original is flat:  # too few beats: the copy is the record unchanged
      assert example is flat
      continue
    assert example['record_id'] == original['record_id'] + f'#shift{i // 3}'.encode()
    assert example['reports'] == original['reports']
    assert example['heart_rate'] == pytest.approx(heart_rate.heart_rate(example['ecg']))
    assert example['heart_rate'] == pytest.approx(original['heart_rate'], rel=0.01)
    assert not np.array_equal(example['ecg'], original['ecg'])
  np.testing.assert_array_equal(source.__getitems__([7])[0]['ecg'], first[7]['ecg'])
  assert not np.array_equal(first[3]['ecg'], first[6]['ecg'])  # copies differ
  with pytest.raises(ValueError, match='non-negative'):
    augmentation.PhaseShifted(ListSource(examples), copies=-1, seed=0)


def test_augmentation_is_off_in_the_paper_config():
  config = diffusets.get_config()
  assert config.diffusion.stretch_copies == 0 and config.diffusion.shift_copies == 0
  assert config.diffusion.fast_rate_extra_draws == 0
  assert config.diffusion.single_report_copies is False


def test_with_copies_stacks_the_kinds_as_the_latents_hold_them():
  records = ListSource([dict(ecg=synthetic_ecg(70.0), heart_rate=np.float32(70.0),
                             record_id=b'0', reports=[b'Sinus rhythm'])])
  assert augmentation.with_copies(records, 0, 1.35, 0, seed=5) is records
  both = augmentation.with_copies(records, 2, 1.2, 3, seed=5)
  assert isinstance(both, augmentation.PhaseShifted) and both.copies == 3 and both.seed == 9
  stretched = both.source
  assert isinstance(stretched, augmentation.TimeStretched) and stretched.source is records
  assert (stretched.copies, stretched.max_factor, stretched.seed) == (2, 1.2, 8)
  assert len(both) == 1 * 3 * 4


def test_single_report_copies_pair_each_multi_report_latent_with_one_report_alone():
  from diffusets_jax.training.latents_stage import with_single_report_copies
  latent = np.arange(3 * 2 * 1, dtype=np.float32).reshape(3, 2, 1)
  data = dict(age=np.array([50.0, 60.0, 70.0], np.float32), sex=['F', 'M', 'F'],
              heart_rate=np.array([60.0, 110.0, 80.0], np.float32), record_id=['a', 'b', 'c'],
              reports=[['Normal ECG', 'Sinus rhythm'], ['Sinus tachycardia'],
                       ['Left axis deviation', 'Sinus rhythm', 'Left ventricular hypertrophy']])
  out_latent, out = with_single_report_copies(latent, data, seed=5)
  np.testing.assert_array_equal(out_latent, latent[[0, 1, 2, 0, 2]])
  assert out['record_id'] == ['a', 'b', 'c', 'a', 'c'] and out['sex'] == ['F', 'M', 'F', 'F', 'F']
  np.testing.assert_array_equal(out['heart_rate'], [60.0, 110.0, 80.0, 60.0, 80.0])
  np.testing.assert_array_equal(out['age'], [50.0, 60.0, 70.0, 50.0, 70.0])
  assert out['reports'][:3] == data['reports']
  assert [len(r) for r in out['reports'][3:]] == [1, 1]
  assert out['reports'][3][0] in data['reports'][0] and out['reports'][4][0] in data['reports'][2]
  assert with_single_report_copies(latent, data, seed=5)[1]['reports'] == out['reports']  # seeded
  # Over seeds, every report of a record is the one drawn some time.
  drawn = {with_single_report_copies(latent, data, seed)[1]['reports'][4][0] for seed in range(40)}
  assert drawn == set(data['reports'][2])
