"""The LUDB builder, preprocessing and the heart-rate detector."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from diffusets_jax import batching
from diffusets_jax.datasets import heart_rate, ludb, preprocessing


def synthetic_ecg(bpm: float, fs: float = 102.4, seconds: float = 10.0, seed: int = 0,
                  dropped: tuple = ()):
  """12 leads of narrow QRS-like spikes plus broad T waves and noise at a known rate; the beats
  numbered in `dropped` are left out (pauses)."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(fs * seconds)) / fs
  signal = np.zeros_like(t)
  for number, beat in enumerate(np.arange(0.3, seconds, 60.0 / bpm)):
    if number in dropped:
      continue
    signal += 1.2 * np.exp(-0.5 * ((t - beat) / 0.012) ** 2)
    signal += 0.3 * np.exp(-0.5 * ((t - beat - 0.25) / 0.05) ** 2)
  gains = rng.uniform(0.3, 1.2, 12) * rng.choice([-1, 1], 12)
  return signal[:, None] * gains + 0.02 * rng.standard_normal((len(t), 12))


@pytest.mark.parametrize('bpm', [30, 45, 60, 75, 100, 150, 200])
def test_heart_rate_within_2_bpm_on_known_rates(bpm):
  assert abs(float(heart_rate.heart_rate(synthetic_ecg(bpm, seed=bpm))) - bpm) < 2.0


def test_heart_rate_is_batched_and_flags_flat_signals():
  batch = np.stack([synthetic_ecg(60), synthetic_ecg(120, seed=1), np.zeros((1024, 12))])
  rates = heart_rate.heart_rate(batch)
  assert rates.shape == (3,)
  assert abs(rates[0] - 60) < 2 and abs(rates[1] - 120) < 2 and np.isnan(rates[2])


def test_longest_rr_ratio_flags_a_dropped_beat_and_not_a_regular_rhythm():
  batch = np.stack([synthetic_ecg(60), synthetic_ecg(90, seed=1), synthetic_ecg(60, dropped=(4,)),
                    synthetic_ecg(60, dropped=(3, 6)), np.zeros((1024, 12))])
  ratio = heart_rate.longest_rr_ratio(batch)
  assert ratio.shape == (5,)
  assert ratio[0] == pytest.approx(1.0, abs=0.05) and ratio[1] == pytest.approx(1.0, abs=0.05)
  assert ratio[2] == pytest.approx(2.0, abs=0.1) and ratio[3] == pytest.approx(2.0, abs=0.1)
  assert np.isnan(ratio[4])
  assert heart_rate.pause_share(ratio) == 0.5  # 2 of the 4 with a ratio; the flat one left out
  assert np.isnan(heart_rate.pause_share(ratio[4:]))
  assert (ratio[:2] < heart_rate.PAUSE_RATIO).all() and (ratio[2:4] > heart_rate.PAUSE_RATIO).all()
  # The dropped beat pulls the mean-RR rate down, which is why pauses are reported beside it.
  assert heart_rate.heart_rate(batch[2]) < 55


def test_beat_diagnostics_split_the_rate_error_of_a_pause_from_the_rhythm():
  from diffusets_jax.evaluation.beats import diagnose
  generated = np.stack([synthetic_ecg(60, dropped=(4,)), synthetic_ecg(90, seed=2)])
  real = np.stack([synthetic_ecg(60, seed=3), synthetic_ecg(90, seed=4)])
  summary = diagnose(generated, real, np.array([60.0, 90.0]))
  assert summary['pauses'] == dict(generated=0.5, real=0.0)
  bands = {band['requested_bpm']: band for band in summary['by_requested_rate']}
  assert set(bands) == {'60-80', '80-100'}  # empty bands are left out
  first_band = bands['60-80']  # the ECG with the dropped beat
  assert first_band['records'] == 1 and first_band['pauses'] == 1.0
  assert first_band['mean_rr']['bias_bpm'] < -5 and abs(first_band['median_rr']['bias_bpm']) < 2
  second = summary['second_detector']
  assert second['pauses'] == dict(generated=0.5, real=0.0) and second['pauses_both_detectors'] == 0.5
  assert second['mean_rr']['real']['mae_bpm'] < 2 and second['mean_rr']['generated']['bias_bpm'] < -2


def test_beat_diagnostics_script_writes_both_detectors_figures(tmp_path):
  from PIL import Image
  generated = np.stack([synthetic_ecg(60, dropped=(4,)), synthetic_ecg(90, seed=2),
                        synthetic_ecg(75, seed=5)])
  real = np.stack([synthetic_ecg(60, seed=3), synthetic_ecg(90, seed=4), synthetic_ecg(75, seed=6)])
  np.savez(tmp_path / 'generated.npz', generated=generated, real=real,
           requested_hr=np.array([60.0, 90.0, 75.0]), record_id=np.array(['1', '2', '3']))
  run = subprocess.run([sys.executable, 'scripts/beat_diagnostics.py', '--evaluation', tmp_path,
                        '--out', tmp_path / 'out', '--tag', 't'], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
  assert run.returncode == 0, run.stderr[-2000:]
  summary = json.loads((tmp_path / 'out' / 't.json').read_text())
  assert summary['pauses']['generated'] == pytest.approx(1 / 3, abs=1e-3)
  assert summary['second_detector']['pauses']['generated'] == pytest.approx(1 / 3, abs=1e-3)
  figure = np.asarray(Image.open(tmp_path / 'out' / 'pauses_t.png').convert('L'))
  assert figure.std() > 10  # drawn, not blank


def test_nan_samples_are_replaced_and_counted():
  x = np.ones((10, 2))
  x[3, 1] = np.nan
  x[7, 0] = np.nan
  cleaned, count = preprocessing.replace_nans(x)
  assert count == 2 and cleaned[3, 1] == 0 and cleaned[7, 0] == 0 and np.isfinite(cleaned).all()


def test_resample_and_lead_order():
  x = np.sin(np.linspace(0, 20 * np.pi, 5000))[:, None].repeat(12, 1)
  assert preprocessing.resample(x).shape == (1024, 12)
  order = preprocessing.standard_lead_order(
      ['I', 'II', 'III', 'aVR', 'aVF', 'aVL', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'])
  assert order[4:6] == [5, 4]
  with pytest.raises(ValueError, match="missing leads"):
    preprocessing.standard_lead_order(['I', 'II'])


def test_split_is_deterministic_disjoint_and_sized():
  ids = [str(i) for i in range(1, 201)]
  a, b = ludb.split_record_ids(ids), ludb.split_record_ids(list(reversed(ids)))
  assert a == b
  assert {k: len(v) for k, v in a.items()} == {'train': 160, 'val': 20, 'test': 20}
  assert len(set(a['train']) | set(a['val']) | set(a['test'])) == 200


def test_parse_comments():
  age, sex, reports = ludb.parse_comments(
      ['<age>: 51', '<sex>: F', '<diagnoses>:', 'Rhythm: Sinus bradycardia.',
       'Electric axis of the heart: left axis deviation. ', 'Left ventricular hypertrophy.'])
  assert (age, sex) == (51.0, 'F')
  assert reports == ['Sinus bradycardia', 'Electric axis of the heart: left axis deviation',
                     'Left ventricular hypertrophy']
  age, sex, _ = ludb.parse_comments(['<age>: >89', '<sex>: ?', '<diagnoses>:', 'x'])
  assert np.isnan(age) and sex == ''


def test_bundled_build(tfds_dir):
  builder = ludb.Ludb(data_dir=str(tfds_dir), file_format='array_record')
  sources = builder.as_data_source()
  assert {k: len(v) for k, v in sources.items()} == {'train': 160, 'val': 20, 'test': 20}
  example = sources['test'][0]
  assert example['ecg'].shape == (1024, 12) and example['ecg'].dtype == np.float32
  assert 20 <= example['heart_rate'] <= 300 and len(example['reports']) >= 1
  ids = [sources[s][i]['record_id'] for s in sources for i in range(len(sources[s]))]
  assert len(set(ids)) == 200  # patient-level: no record in two splits


def test_corrupt_and_truncated_records_are_skipped_and_counted(tmp_path, caplog):
  raw = tmp_path / 'raw'
  (raw / 'data').mkdir(parents=True)
  records = [str(i) for i in range(1, 21)]
  for r in records:  # the header and its signal files (compressed: N_1.dat, N_2.dat)
    for path in [ludb.BUNDLED_DIR / 'data' / f'{r}.hea',
                 *(ludb.BUNDLED_DIR / 'data').glob(f'{r}_*.dat')]:
      shutil.copy(path, raw / 'data' / path.name)
  truncated, corrupt = ludb.split_record_ids(records)['train'][:2]
  for path in (raw / 'data').glob(f'{truncated}_*.dat'):
    path.write_bytes(path.read_bytes()[:1000])
  (raw / 'data' / f'{corrupt}.hea').write_text('this is not a header\n')
  (raw / 'RECORDS').write_text('\n'.join(f'data/{r}' for r in records))
  with caplog.at_level('WARNING'):
    builder = ludb.build(tmp_path / 'tfds', raw)
  sizes = {k: len(v) for k, v in builder.as_data_source().items()}
  assert sizes == {'train': 14, 'val': 2, 'test': 2}
  messages = ' '.join(r.getMessage() for r in caplog.records)
  assert f'skipping record {truncated}' in messages and f'skipping record {corrupt}' in messages
  assert 'skipped 2 corrupt record(s)' in messages


def test_reading_needs_no_tensorflow(tfds_dir):
  code = ('import sys, json; from diffusets_jax.datasets import ludb;'
          f'src = ludb.Ludb(data_dir={str(tfds_dir)!r}, file_format="array_record")'
          '.as_data_source("train"); src[0];'
          'print(json.dumps("tensorflow" in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert json.loads(out.stdout.strip().splitlines()[-1]) is False


def test_batches_depend_only_on_the_step_and_split_over_devices():
  a = batching.batch_indices(7, 160, 32, seed=0)
  assert np.array_equal(a, batching.batch_indices(7, 160, 32, seed=0))
  epoch = np.concatenate([batching.batch_indices(s, 160, 32, 0) for s in range(5)])
  assert sorted(epoch) == list(range(160))
  sharded = batching.shard({'x': np.zeros((8, 3))}, num_devices=4)
  assert sharded['x'].shape == (4, 2, 3)
  with pytest.raises(ValueError, match='divisible by 4'):
    batching.shard({'x': np.zeros((6, 3))}, num_devices=4)
  with pytest.raises(ValueError, match='larger than the 10 training'):
    batching.steps_per_epoch(10, 32)


def test_heart_rate_agrees_with_xqrs_on_ludb():
  """A second, independent detector (wfdb's XQRS on lead II at 500 Hz) on 30 LUDB records."""
  ours, theirs = [], []
  for line in (ludb.BUNDLED_DIR / 'RECORDS').read_text().split()[:30]:
    record = wfdb.rdrecord(str(ludb.BUNDLED_DIR / line))
    signal = record.p_signal[:, preprocessing.standard_lead_order(record.sig_name)]
    signal, _ = preprocessing.replace_nans(signal)
    ours.append(float(heart_rate.heart_rate(preprocessing.resample(signal))))
    theirs.append(heart_rate.xqrs_rate(signal[:, 1], record.fs))
  ours, theirs = np.array(ours), np.array(theirs)
  both = np.isfinite(ours) & np.isfinite(theirs)
  difference = np.abs(ours[both] - theirs[both])
  assert both.sum() >= 25
  assert np.median(difference) < 1.0 and np.mean(difference <= 5.0) >= 0.9


def test_second_detector_reads_rates_and_pauses_at_the_models_sample_rate():
  batch = np.stack([synthetic_ecg(60), synthetic_ecg(120, seed=1), synthetic_ecg(60, dropped=(4,)),
                    np.zeros((1024, 12))])
  rates, ratios = heart_rate.second_detector(batch)
  assert rates.shape == ratios.shape == (4,)
  assert abs(rates[0] - 60) < 2 and abs(rates[1] - 120) < 2 and rates[2] < 55
  assert ratios[0] < heart_rate.PAUSE_RATIO and ratios[1] < heart_rate.PAUSE_RATIO
  assert ratios[2] == pytest.approx(2.0, abs=0.1)
  assert np.isnan(rates[3]) and np.isnan(ratios[3])


def test_second_detector_agrees_with_ours_on_ludb_at_102_hz():
  """On real ECGs at the model's rate, as the evaluation runs it: the upsampling is what makes
  XQRS usable there."""
  records = (ludb.BUNDLED_DIR / 'RECORDS').read_text().split()[:20]
  batch = []
  for line in records:
    record = wfdb.rdrecord(str(ludb.BUNDLED_DIR / line))
    signal = record.p_signal[:, preprocessing.standard_lead_order(record.sig_name)]
    batch.append(preprocessing.resample(preprocessing.replace_nans(signal)[0]))
  batch = np.stack(batch)
  rates, ratios = heart_rate.second_detector(batch)
  difference = np.abs(rates - heart_rate.heart_rate(batch))
  assert np.mean(np.isfinite(rates)) >= 0.9
  assert np.nanmedian(difference) < 1.0 and np.nanmean(ratios > heart_rate.PAUSE_RATIO) <= 0.1


def test_rates_by_phrase_counts_matching_records_and_rates_above():
  reports = [['Sinus rhythm', 'Left axis deviation'], ['sinus tachycardia'], ['SINUS RHYTHM'],
             ['Atrial fibrillation']]
  rows = heart_rate.rates_by_phrase(reports, [60.0, 120.0, 110.0, float('nan')],
                                    ['sinus rhythm', 'atrial fibrillation', 'flutter'],
                                    above_bpm=100)
  rhythm, fibrillation, flutter = rows
  assert rhythm['records'] == 2 and rhythm['above'] == 1
  assert rhythm['quantiles_bpm']['0.5'] == 85.0 and rhythm['quantiles_bpm']['1'] == 110.0
  # A record without a rate counts as mentioning the phrase but has no rate to summarise.
  assert fibrillation['records'] == 1 and fibrillation['quantiles_bpm'] is None
  assert flutter['records'] == 0 and flutter['above'] == 0
