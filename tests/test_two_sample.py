"""The classifier two-sample test: chance on sets it cannot tell apart, near 1 on a shifted
set, blind to amplitude and baseline by its preprocessing."""
import numpy as np
import pytest

from diffusets_jax.evaluation import two_sample
from tests.test_data import synthetic_ecg

SETTINGS = dict(steps=150, folds=5)


def ecgs(rates, seed: int) -> np.ndarray:
  return np.stack([synthetic_ecg(rate, seed=seed + i) for i, rate in enumerate(rates)])


def test_identical_sets_are_told_apart_at_chance():
  # Each ECG is in both sets and held out with its twin: the classifier scores both alike.
  same = two_sample.preprocess(ecgs(np.random.default_rng(0).uniform(55, 95, 40), seed=0))
  result = two_sample.accuracy(same, same, paired=True, **SETTINGS)
  assert result['per_class'] == 40 and len(result['fold_accuracy']) == 5
  assert result['accuracy'] == 0.5


def test_two_draws_of_one_distribution_are_told_apart_near_chance():
  rng = np.random.default_rng(1)
  first = ecgs(rng.uniform(55, 95, 40), seed=100)
  second = ecgs(rng.uniform(55, 95, 40), seed=200)
  result = two_sample.accuracy(two_sample.preprocess(first), two_sample.preprocess(second),
                               **SETTINGS)
  assert 0.3 <= result['accuracy'] <= 0.7


def test_a_shifted_set_is_told_apart():
  # The same kind of ECGs with a 0.3 mV, 20 Hz oscillation added (inside the 0.5-40 Hz band).
  rng = np.random.default_rng(2)
  first = ecgs(rng.uniform(55, 95, 40), seed=300)
  second = ecgs(rng.uniform(55, 95, 40), seed=400)
  t = np.arange(1024)[None, :, None] / 102.4
  shifted = second + 0.3 * np.sin(2 * np.pi * 20.0 * t + rng.uniform(0, 6.3, (40, 1, 12)))
  result = two_sample.accuracy(two_sample.preprocess(first), two_sample.preprocess(shifted),
                               **SETTINGS)
  assert result['accuracy'] >= 0.95


def test_preprocessing_removes_amplitude_and_baseline():
  ecg = ecgs([70, 80], seed=3)
  scaled = 3.0 * ecg + 0.7  # three times the voltage on a raised baseline
  np.testing.assert_allclose(two_sample.preprocess(scaled), two_sample.preprocess(ecg),
                             atol=1e-4)
  out = two_sample.preprocess(ecg, leads=(two_sample.LEAD_II,))
  assert out.shape == (2, 1024, 1)
  np.testing.assert_allclose(out.std(axis=1), 1.0, rtol=1e-3)
  assert np.all(two_sample.preprocess(np.zeros((1, 1024, 12))) == 0)


def test_bad_sets_are_refused():
  with pytest.raises(ValueError, match='at least 5 ECGs per set'):
    two_sample.accuracy(np.zeros((3, 1024, 1)), np.zeros((8, 1024, 1)), folds=5)
  with pytest.raises(ValueError, match='paired sets must be of one size'):
    two_sample.accuracy(np.zeros((6, 1024, 1)), np.zeros((8, 1024, 1)), paired=True)
