"""The evaluation suite: each metric on cases with known answers, the CLIP model, and the
evaluate command end to end (determinism, bad input)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest
import scipy.linalg

from diffusets_jax import config_validation
from diffusets_jax.conditioning import text_encoders
from diffusets_jax.datasets import heart_rate
from diffusets_jax.evaluation import evaluator, metrics
from diffusets_jax.evaluation.clip_features import ClipFeatures
from diffusets_jax.training import clip_stage

ROOT = Path(__file__).resolve().parents[1]


def closed_form_frechet(mean_a, cov_a, mean_b, cov_b):
  """The textbook form with a general matrix square root (scipy), independent of ours."""
  root = scipy.linalg.sqrtm(cov_a @ cov_b).real
  return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def frechet(features_a, features_b):
  """FID of two (n, d) feature sets: fitted Gaussians (unbiased covariance), closed form."""
  stats = [(np.mean(f, axis=0), np.cov(np.asarray(f, np.float64), rowvar=False))
           for f in (features_a, features_b)]
  return closed_form_frechet(*stats[0], *stats[1])


def random_covariance(rng, d):
  m = rng.standard_normal((d, d))
  return m @ m.T / d + 0.1 * np.eye(d)


def test_fid_of_identical_sets_is_zero():
  features = np.random.default_rng(0).standard_normal((300, 64))
  assert abs(metrics.fid(features, features)) < 1e-8


def test_frechet_distance_known_value_and_closed_form():
  # diag(1, 4) vs diag(4, 1), means 2.2 apart: 5 + (1 + 4 + 4 + 1) - 2 (2 + 2) = 7
  value = metrics.frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]),
                                   np.diag([4.0, 1.0]))
  assert value == pytest.approx(7.0, abs=1e-12)
  rng = np.random.default_rng(1)
  mean_a, mean_b = rng.standard_normal(6), rng.standard_normal(6)
  cov_a, cov_b = random_covariance(rng, 6), random_covariance(rng, 6)
  assert metrics.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(
      closed_form_frechet(mean_a, cov_a, mean_b, cov_b), rel=1e-9)


def test_fid_of_two_gaussian_samples_matches_the_closed_form():
  rng = np.random.default_rng(2)
  mean_a, mean_b = np.zeros(4), np.array([1.0, -0.5, 0.0, 0.3])
  cov_a, cov_b = random_covariance(rng, 4), random_covariance(rng, 4)
  a = rng.multivariate_normal(mean_a, cov_a, 200_000)
  b = rng.multivariate_normal(mean_b, cov_b, 200_000)
  expected = closed_form_frechet(mean_a, cov_a, mean_b, cov_b)
  assert metrics.fid(a, b) == pytest.approx(expected, rel=0.02)


def test_precision_and_recall_on_hand_built_points():
  # Real: 0, 1, ..., 9 on a line; with k = 3 each point's radius is the distance to its 3rd
  # nearest other point: 3 at both ends (0 -> 3), 2 one step in (1 -> 3), 2 inside.
  real = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
  np.testing.assert_allclose(metrics.manifold_radii(real, 3), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])
  # Generated: 4 points near 4.5 (inside the real manifold) and 4 far away at x = 40.
  generated = np.array([[4.5, 0.0], [4.5, 1.0], [5.5, 0.0], [5.0, 0.5],
                        [40.0, 0.0], [41.0, 0.0], [42.0, 0.0], [43.0, 0.0]])
  precision, recall = metrics.precision_recall(real, generated, k=3)
  assert precision == 0.5
  # Generated radii: 1 for each point of the near cluster, so its balls cover the
  # real points 4, 5 and 6 only (of 10); the far cluster covers none.
  assert recall == pytest.approx(0.3)
  assert metrics.precision_recall(real, real, k=3) == (1.0, 1.0)


def test_clip_score_range_and_signal_mae_known_value():
  rng = np.random.default_rng(3)
  a, b = rng.standard_normal((50, 8)), rng.standard_normal((50, 8))
  assert -1.0 <= metrics.clip_score(a, b) <= 1.0
  assert metrics.clip_score(a, 3 * a) == pytest.approx(1.0)
  assert metrics.clip_score(a, -a) == pytest.approx(-1.0)
  ecg = rng.standard_normal((3, 1024, 12))
  np.testing.assert_allclose(metrics.signal_mae(ecg, ecg + 0.25), 0.25)


def test_band_mean_squares_add_up_and_put_a_sine_in_its_band():
  rng = np.random.default_rng(4)
  noise = rng.standard_normal((3, 1024, 12))
  assert sum(metrics.band_mean_squares(noise, 102.4)) == pytest.approx(np.mean(noise ** 2))
  time_s = np.arange(1024) / 102.4
  # 5 Hz and a 0.3 Hz drift fall on FFT bins here (10 s windows), so each lands in one band.
  sine = 2.0 * np.sin(2 * np.pi * 5.0 * time_s) + 0.5 * np.cos(2 * np.pi * 0.3 * time_s)
  low, mid, high = metrics.band_mean_squares(np.tile(sine[None, :, None], (2, 1, 12)), 102.4)
  assert low == pytest.approx(0.5 ** 2 / 2) and mid == pytest.approx(2.0 ** 2 / 2)
  assert high == pytest.approx(0.0, abs=1e-20)


def test_lead_residuals_are_zero_for_consistent_leads_and_measure_an_offset():
  rng = np.random.default_rng(4)
  i, ii = rng.standard_normal((2, 5, 1024))
  limb = [i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2]
  ecg = np.stack(limb + [rng.standard_normal((5, 1024)) for _ in range(6)], axis=-1)
  for relation in metrics.lead_residuals(ecg).values():
    assert np.max(relation['rms_mv']) < 1e-12
  ecg[..., 2] += 0.1  # lead III off by 0.1 mV everywhere
  residuals = metrics.lead_residuals(ecg)
  np.testing.assert_allclose(residuals['III = II - I']['rms_mv'], 0.1)
  assert np.max(residuals['aVF = II - I / 2']['rms_mv']) < 1e-12


@pytest.fixture(scope='module')
def trained_clip(tmp_path_factory, tfds_dir):
  """A tiny CLIP model trained for 100 steps on the LUDB training split."""
  from tests.conftest import micro_config
  config = micro_config(tfds_dir)
  config.clip.epochs = 10
  config = config_validation.validate(config)
  workdir = tmp_path_factory.mktemp('clip')
  config_path = workdir / 'config.json'
  config_path.write_text(config.to_json())
  clip_stage.train_clip(config, workdir)
  return config, workdir


def test_clip_score_is_higher_for_matched_than_shuffled_pairs(trained_clip):
  from diffusets_jax.datasets import input_pipeline
  config, workdir = trained_clip
  features = ClipFeatures.from_workdir(workdir)
  data = input_pipeline.read_all(input_pipeline.open_split(config.data, 'train'),
                                 keys=('ecg', 'reports'))
  ecg_features = features.ecg_features(data['ecg'])
  text_features = features.text_features(text_encoders.embed_reports(
      text_encoders.make_text_encoder(config.text), config.text.template, data['reports']))
  matched = metrics.clip_score(ecg_features, text_features)
  shuffled = np.mean([metrics.clip_score(
      ecg_features, text_features[np.random.default_rng(s).permutation(len(text_features))])
      for s in range(5)])
  assert -1.0 <= shuffled < matched <= 1.0
  assert matched - shuffled > 0.1


def evaluate(workdir, out, **kwargs):
  kwargs = dict(dict(sampler='ddim', steps=3, num=12), **kwargs)
  return evaluator.evaluate(workdir, out=out, **kwargs)


def without_timings(path):
  summary = json.loads(Path(path).read_text())
  summary.pop('seconds')
  return summary


def test_sweep_reports_ask_each_rate_as_the_rhythm_it_is():
  consistent = ml_collections.ConfigDict(dict(sweep_reports='consistent', sweep_report='x'))
  asked = {rate: evaluator.sweep_report(rate, consistent) for rate in (40, 59, 60, 100, 101, 160)}
  assert asked == {40: 'Sinus bradycardia', 59: 'Sinus bradycardia', 60: 'Sinus rhythm',
                   100: 'Sinus rhythm', 101: 'Sinus tachycardia', 160: 'Sinus tachycardia'}
  single = ml_collections.ConfigDict(dict(sweep_reports='single', sweep_report='Sinus rhythm'))
  assert {evaluator.sweep_report(rate, single) for rate in (40, 160)} == {'Sinus rhythm'}
  with pytest.raises(ValueError, match='sweep_reports'):
    evaluator.sweep_report(60, ml_collections.ConfigDict(dict(sweep_reports='paper')))


def inked_share(path) -> float:
  """Share of a figure's pixels drawn darker than the white page: a blank or empty plot is near
  0 (file sizes say little of palette PNGs)."""
  from PIL import Image
  pixels = np.asarray(Image.open(path).convert('RGB'))
  return float(np.mean(np.any(pixels < 200, axis=-1)))


def test_evaluate_writes_metrics_and_report_and_is_deterministic(trained_workdir, tmp_path):
  sweep = dict(sweep_reports='consistent', sweep_rates=(50, 130))
  first = evaluate(trained_workdir, tmp_path / 'first', seed=0, **sweep)
  summary = without_timings(first / 'metrics.json')
  assert summary['num'] == 12 and summary['sampler'] == 'ddim' and summary['steps'] == 3
  assert summary['unet_evaluations_per_ecg'] == 3
  rows = summary['heart_rate_sweep']['rows']
  assert [(row['requested'], row['report']) for row in rows] == [
      (50.0, 'Sinus bradycardia'), (130.0, 'Sinus tachycardia')]
  assert all(row['pauses'] is None or 0 <= row['pauses'] <= 1 for row in rows)  # None: no rate
  for section, key, *_ in evaluator.report.ROWS:
    assert set(summary[section][key]) == {'generated', 'real'}
  diagnostic = summary['diagnostic']
  assert -1 <= diagnostic['clip_score']['generated'] <= 1
  assert 0 <= diagnostic['precision']['generated'] <= 1
  assert len(summary['heart_rate_sweep']['rows']) == 2
  with np.load(first / 'generated.npz') as f:
    assert f['generated'].shape == f['real'].shape == (12, 1024, 12)
    assert summary['feature']['rhythm_pauses']['real'] == pytest.approx(
        heart_rate.pause_share(heart_rate.longest_rr_ratio(f['real'])))
    assert 'second detector (XQRS, lead II): MAE' in (first / 'report.md').read_text()
    rates, ratios = heart_rate.second_detector(f['generated'])
    assert summary['feature']['rhythm_pauses_xqrs']['generated'] == pytest.approx(
        heart_rate.pause_share(ratios), nan_ok=True)
    requested = f['requested_hr']
    measured = np.isfinite(rates)
    assert summary['feature']['heart_rate_mae_bpm_xqrs']['generated'] == pytest.approx(
        np.mean(np.abs(rates[measured] - requested[measured])) if measured.any() else np.nan,
        nan_ok=True)
    assert summary['signal']['mae_mv']['generated'] == pytest.approx(
        np.mean(np.abs(f['generated'].astype(np.float64) - f['real'])), rel=1e-6)
    assert summary['signal']['flat_line_mae_mv'] == pytest.approx(np.mean(np.abs(f['real'])),
                                                                  rel=1e-6)
    # rFID from FIDs computed here with scipy's matrix square root, on the saved features:
    # generated against all real ECGs, over real half A against real half B.
    real, generated = f['real_features'].astype(np.float64), f['generated_features']
    half_a, half_b = evaluator.halves(len(real), summary['seed'])
    rfid = frechet(generated, real) / frechet(real[half_a], real[half_b])
    assert diagnostic['rfid']['generated'] == pytest.approx(rfid, rel=1e-3)
    vae = summary['vae']
    error = f['reconstructed'].astype(np.float64) - f['real']
    assert vae['mae_mv'] == pytest.approx(np.mean(np.abs(error)), rel=1e-6)
    bands = vae['error_by_band']
    assert sum(b['share_of_squared_error'] for b in bands) == pytest.approx(1.0)
    assert sum(b['error_rms_mv'] ** 2 for b in bands) == pytest.approx(np.mean(error ** 2),
                                                                         rel=1e-6)
  report = (first / 'report.md').read_text()
  assert 'Where the error lies in frequency' in report
  for figure in ('real_vs_generated.png', 'heart_rate_sweep.png', 'feature_space.png',
                 'vae_reconstruction.png'):
    assert figure in report and inked_share(first / figure) > 0.005
  assert 'Sinus tachycardia' in report and 'U-Net evaluations per ECG' in report
  again = evaluate(trained_workdir, tmp_path / 'again', seed=0, **sweep)
  assert without_timings(again / 'metrics.json') == summary
  other = without_timings(evaluate(trained_workdir, tmp_path / 'other', seed=1, sweep=False,
                                   data_from=trained_workdir) / 'metrics.json')
  assert other['signal']['mae_mv'] != summary['signal']['mae_mv']
  assert other['data_from'] == str(trained_workdir) and other['num'] == summary['num']
  with pytest.raises(FileNotFoundError, match='config.json'):  # the records come from there
    evaluate(trained_workdir, tmp_path / 'none', sweep=False, data_from=tmp_path)


def test_evaluate_without_a_clip_model_names_the_stage(trained_workdir, tmp_path):
  no_clip = tmp_path / 'no_clip'
  no_clip.mkdir()
  shutil.copy(trained_workdir / 'config.json', no_clip / 'config.json')
  with pytest.raises(FileNotFoundError, match='--stage clip'):
    evaluate(trained_workdir, tmp_path / 'out', clip_workdir=no_clip)
  assert not (tmp_path / 'out').exists()


def test_evaluate_refuses_num_larger_than_the_split(trained_workdir, tmp_path):
  out = subprocess.run([sys.executable, 'evaluate.py', f'--workdir={trained_workdir}',
                        '--num=21', f'--out={tmp_path / "out"}'], cwd=ROOT,
                       capture_output=True, text=True)
  assert out.returncode != 0
  assert '--num 21 is larger than the test split, which has 20 records' in out.stderr
  assert not (tmp_path / 'out').exists()


def test_evaluate_refuses_a_clip_model_of_another_text_encoder(trained_workdir, tfds_dir,
                                                               tmp_path):
  from tests.conftest import micro_config
  config = micro_config(tfds_dir)
  config.text.encoder = 'hashing'
  config = config_validation.validate(config)
  other = tmp_path / 'hashing_clip'
  other.mkdir()
  (other / 'config.json').write_text(config.to_json())
  clip_stage.train_clip(config, other, max_steps=1)
  with pytest.raises(ValueError, match=r'CLIP model was made with text encoder hashing .* but '
                                       r'minilm .* is given'):
    evaluate(trained_workdir, tmp_path / 'out', clip_workdir=other)
  assert not (tmp_path / 'out').exists()


def test_score_needs_two_halves_of_more_than_k_records(trained_clip):
  _, workdir = trained_clip
  features = ClipFeatures.from_workdir(workdir)
  ecg = np.zeros((6, 1024, 12), np.float32)
  with pytest.raises(ValueError, match='need at least 8 records'):
    evaluator.score(features, ecg, ecg, np.zeros((6, 384)), np.full(6, 60.0), k=3)


def test_vae_reconstruction_script_covers_every_split(trained_workdir, tmp_path):
  out = tmp_path / 'bands.json'
  run = subprocess.run([sys.executable, 'scripts/vae_reconstruction.py', '--workdir',
                        str(trained_workdir), '--out', str(out)], cwd=ROOT, capture_output=True,
                       text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(out.read_text())
  assert {key: result[key]['records'] for key in result if key.startswith('ludb_')} == {
      'ludb_train': 160, 'ludb_val': 20, 'ludb_test': 20}
  test = result['ludb_test']
  assert test['mae_over_flat_line'] == pytest.approx(test['mae_mv'] / test['flat_line_mae_mv'])
  assert sum(band['share_of_squared_error'] for band in test['error_by_band']) == pytest.approx(1)
  missing = subprocess.run([sys.executable, 'scripts/vae_reconstruction.py', '--workdir',
                            str(tmp_path / 'missing'), '--out', str(out)], cwd=ROOT,
                           capture_output=True, text=True)
  assert missing.returncode == 2 and 'no such folder' in missing.stderr
