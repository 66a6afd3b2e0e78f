"""The PTB-XL and MIMIC-IV-ECG builders on small folders with the real layouts (fake_physionet)."""
import logging

import numpy as np
import pytest

from configs import default
from diffusets_jax.datasets import input_pipeline, preprocessing
from tests import fake_physionet


def data_config(name, manual_dir, tfds_dir, num_workers=1, patients_csv=''):
  config = default.get_config().data
  config.name, config.manual_dir, config.tfds_dir = name, str(manual_dir), str(tfds_dir)
  config.num_workers, config.patients_csv = num_workers, patients_csv
  return config


def build(config):
  """The builder of the config's one dataset."""
  return input_pipeline.build(config)[config.name]


def read_split(builder, split) -> dict:
  source = builder.as_data_source(split)
  return {ex['record_id'].decode(): ex for ex in source.__getitems__(list(range(len(source))))}


def assert_signal(example, expected):
  """The stored ECG is the standard-order signal, resampled (16-bit, 1 uV quantisation)."""
  np.testing.assert_allclose(example['ecg'], preprocessing.resample(expected['signal']),
                             atol=3e-3)


@pytest.fixture(scope='module')
def ptbxl_build(tmp_path_factory):
  root = tmp_path_factory.mktemp('ptbxl')
  expected = fake_physionet.make_ptbxl(root / 'ptb-xl-1.0.3')
  return expected, root


def test_ptbxl_builds_the_expected_records(ptbxl_build, caplog):
  expected, root = ptbxl_build
  with caplog.at_level(logging.WARNING):
    builder = build(data_config('ptbxl', root / 'ptb-xl-1.0.3', root / 'tfds'))
  for split in ('train', 'val', 'test'):
    examples = read_split(builder, split)
    assert set(examples) == set(expected[split]), split
    for record_id, example in examples.items():
      assert_signal(example, expected[split][record_id])
      assert abs(example['heart_rate'] - expected[split][record_id]['bpm']) < 2.0
      assert [r.decode() for r in example['reports']] == [
          f'sinusrhythmus normales ekg {record_id}']
      codes = [c.decode() for c in example['scp_codes']]
      assert codes == (['NORM', 'SR'] if int(record_id) % 3 else ['IMI', 'SR'])
      assert example['scp_likelihoods'][0] == (100.0 if int(record_id) % 3 else 35.0)
      assert example['sex'].decode() == ('F' if int(record_id) % 2 else 'M')
      assert example['age'] == (90.0 if record_id == '5' else 40 + int(record_id))
  kept = {r for split in ('train', 'val', 'test') for r in read_split(builder, split)}
  assert not kept & set(expected['skipped'])
  log = caplog.text
  for reason in ('fewer than 12 standard leads', 'expected 10 s, got 5.00 s', 'missing file',
                 'broken row: broken scp_codes', 'broken row: broken ecg_id', 'no report'):
    assert reason in log, reason


def test_ptbxl_max_ecg_id_reads_only_the_records_up_to_it(ptbxl_build):
  """data.ptbxl_max_ecg_id: a full download read as the subset of ids up to it."""
  expected, root = ptbxl_build
  config = data_config('ptbxl', root / 'ptb-xl-1.0.3', root / 'tfds')
  every = {split: read_split(build(config), split) for split in ('train', 'val', 'test')}
  ids = sorted(int(i) for split in every.values() for i in split)
  limit = ids[len(ids) // 2]
  config.ptbxl_max_ecg_id = limit
  for split, examples in every.items():
    source = input_pipeline.open_split(config, split)
    read = [ex['record_id'].decode() for ex in source.__getitems__(list(range(len(source))))]
    assert read == [i for i in examples if int(i) <= limit], split
    if read:
      np.testing.assert_array_equal(source.__getitems__([0])[0]['ecg'], examples[read[0]]['ecg'])
  assert 0 < sum(int(i) <= limit for i in ids) < len(ids)


def test_ptbxl_parallel_build_equals_the_serial_one(ptbxl_build, tmp_path):
  expected, root = ptbxl_build
  serial = build(data_config('ptbxl', root / 'ptb-xl-1.0.3', root / 'tfds'))
  parallel = build(data_config('ptbxl', root / 'ptb-xl-1.0.3', tmp_path,
                                              num_workers=2))
  for split in ('train', 'val', 'test'):
    a, b = read_split(serial, split), read_split(parallel, split)
    assert set(a) == set(b)
    for record_id in a:
      np.testing.assert_array_equal(a[record_id]['ecg'], b[record_id]['ecg'])


def test_ptbxl_missing_files_are_listed(tmp_path):
  (tmp_path / 'ptbxl').mkdir()
  (tmp_path / 'ptbxl' / 'scp_statements.csv').write_text('')
  with pytest.raises(FileNotFoundError) as error:
    input_pipeline.build(data_config('ptbxl', tmp_path / 'ptbxl', tmp_path / 'tfds'))
  message = str(error.value)
  assert 'ptbxl_database.csv' in message and 'records500' in message
  assert 'scp_statements.csv' not in message.split('PTB-XL 1.0.3')[0]
  assert 'physionet.org/content/ptb-xl/1.0.3' in message


def test_ptbxl_records100_only(tmp_path):
  """A download of only records100/: auto picks it, the 100 Hz records are resampled to 1024
  samples, and the SCP prompt lists the English descriptions by likelihood (ties keep order)."""
  expected = fake_physionet.make_ptbxl_records100(tmp_path / 'ptbxl')
  config = data_config('ptbxl', tmp_path / 'ptbxl', tmp_path / 'tfds')
  builder = build(config)
  assert builder.builder_config.name == 'records100'
  for record_id, want in expected.items():
    example = read_split(builder, want['split'])[record_id]
    assert example['ecg'].shape == (preprocessing.NUM_SAMPLES, 12)
    assert_signal(example, want)
    assert abs(example['heart_rate'] - want['bpm']) < 2.0
    assert [r.decode() for r in example['scp_reports']] == want['scp_reports']
    assert [r.decode() for r in example['reports']] == [f'bericht {record_id}']
  # What training reads as `reports`: the SCP descriptions, or the free text when chosen.
  source = input_pipeline.open_split(config, 'train')
  assert [[r.decode() for r in ex['reports']] for ex in source.__getitems__([0, 1])] == [
      expected['1']['scp_reports'], expected['2']['scp_reports']]
  config.ptbxl_reports = 'report'
  source = input_pipeline.open_split(config, 'test')
  assert [r.decode() for r in source.__getitems__([0])[0]['reports']] == ['bericht 10']
  config.ptbxl_records = 'records500'
  with pytest.raises(FileNotFoundError, match='records500'):
    build(config)


def test_two_datasets_are_read_as_one(ptbxl_build, tfds_dir):
  """data.name 'ptbxl+ludb': each split is PTB-XL's examples, then LUDB's; `only` keeps one."""
  _, root = ptbxl_build
  config = data_config('ptbxl+ludb', f'{root / "ptb-xl-1.0.3"}+', root / 'tfds')
  ptbxl_train = build(data_config('ptbxl', root / 'ptb-xl-1.0.3', root / 'tfds')).as_data_source(
      'train')
  ludb_train = input_pipeline.open_split(data_config('ludb', '', tfds_dir), 'train')
  config.tfds_dir = str(tfds_dir)  # LUDB is built there; PTB-XL gets built beside it
  both = input_pipeline.open_split(config, 'train')
  assert len(both) == len(ptbxl_train) + len(ludb_train)
  n = len(ptbxl_train)
  mixed = both.__getitems__([n, 0, n + 5])
  assert mixed[0]['record_id'] == ludb_train.__getitems__([0])[0]['record_id']
  assert mixed[1]['record_id'] == ptbxl_train.__getitems__([0])[0]['record_id']
  assert mixed[2]['record_id'] == ludb_train.__getitems__([5])[0]['record_id']
  assert mixed[1]['reports'] == ptbxl_train.__getitems__([0])[0]['scp_reports']
  assert len(input_pipeline.open_split(config, 'train', only='ludb')) == len(ludb_train)
  with pytest.raises(IndexError):
    both.__getitems__([len(both)])
  with pytest.raises(ValueError, match='names a dataset twice'):
    input_pipeline.dataset_names(data_config('ptbxl+ptbxl', '', tfds_dir))
  with pytest.raises(ValueError, match='names 1 folder'):
    input_pipeline.manual_dirs(data_config('ptbxl+ludb', root, tfds_dir))


@pytest.mark.parametrize('with_patients', [True, False])
def test_mimic_builds_reports_heart_rates_and_patient_disjoint_splits(tmp_path, with_patients,
                                                                      caplog):
  expected = fake_physionet.make_mimic(tmp_path / 'mimic-iv-ecg', with_patients)
  config = data_config('mimic_iv_ecg', tmp_path / 'mimic-iv-ecg', tmp_path / 'tfds',
                       patients_csv=expected['patients_csv'] if with_patients else '')
  with caplog.at_level(logging.WARNING):
    builder = build(config)
  subjects = {}
  for split in ('train', 'val', 'test'):
    examples = read_split(builder, split)
    assert set(examples) == set(expected[split]), split
    for record_id, example in examples.items():
      want = expected[split][record_id]
      assert_signal(example, want)  # aVF/aVL of the raw files are back in standard order
      assert [r.decode() for r in example['reports']] == want['reports']
      assert example['heart_rate_source'].decode() == want['source']
      if want['source'] == 'rr_interval':
        assert example['heart_rate'] == pytest.approx(60000 / round(60000 / want['bpm']))
      else:
        assert abs(example['heart_rate'] - want['bpm']) < 2.0
      if with_patients:
        assert example['age'] == want['age'] and example['sex'].decode() == want['sex']
      else:
        assert np.isnan(example['age']) and example['sex'].decode() == ''
      subjects.setdefault(int(example['subject_id']), set()).add(split)
  assert all(len(splits) == 1 for splits in subjects.values())  # patient-disjoint
  assert {s: next(iter(v)) for s, v in subjects.items()} == expected['subject_split']
  for reason in ('no non-empty report', 'no machine_measurements row', 'missing file',
                 'broken row: subject_id, study_id or path'):
    assert reason in caplog.text, reason


def test_mimic_names_a_missing_patients_csv(tmp_path):
  fake_physionet.make_mimic(tmp_path / 'mimic', with_patients=False)
  config = data_config('mimic_iv_ecg', tmp_path / 'mimic', tmp_path / 'tfds',
                       patients_csv=str(tmp_path / 'hosp' / 'patients.csv'))
  with pytest.raises(FileNotFoundError, match=r'data.patients_csv .*patients.csv not found'):
    input_pipeline.build(config)


def test_unknown_dataset_is_named(tmp_path):
  with pytest.raises(ValueError, match=r"unknown dataset 'ptb'; available: \['ludb', 'ptbxl'"):
    input_pipeline.build(data_config('ptb', tmp_path, tmp_path))
