"""TFDS builder `ptbxl`: PTB-XL 1.0.3, 21,799 clinical 12-lead ECGs with free-text reports.

The manual dir is the PTB-XL 1.0.3 folder (see MANUAL_DOWNLOAD_INSTRUCTIONS). Each example:
- `ecg`: (1024, 12) float32 mV, standard lead order, FFT-resampled from the 500 Hz record
  (builder config `records500`) or the 100 Hz one (`records100`; what a download of only
  records100/ has);
- `reports`: [the `report` column] (PTB-XL has one free-text report per ECG, often German);
- `scp_reports`: the English descriptions of its SCP-ECG statements (`scp_statements.csv`), most
  likely first (ties keep the record's order), e.g. ['normal ECG', 'sinus rhythm'];
- `scp_codes`, `scp_likelihoods`: the SCP-ECG statements and their likelihoods (%);
- `age` (years; PTB-XL stores ages above 89 as 300, kept as 90 here; NaN if unknown),
  `sex` ('M', 'F', '' if unknown; PTB-XL codes 0 = male, 1 = female);
- `heart_rate`: bpm measured from the signal; `nan_count`: NaN samples replaced by 0.
Splits: the dataset's recommended `strat_fold` (patient-disjoint): 1-8 train, 9 val, 10 test.
Rows with broken fields and unreadable records are skipped, counted and logged per reason.
"""
import ast
import csv
import math
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from diffusets_jax.datasets import heart_rate, wfdb_records

FOLDS = {'train': range(1, 9), 'val': (9,), 'test': (10,)}
AGE_OVER_89 = 300.0   # how PTB-XL writes an age above 89 (privacy)
AGE_OVER_89_KEPT_AS = 90.0
SEX_CODES = {'0': 'M', '1': 'F'}
INSTRUCTIONS = (
    'Download PTB-XL 1.0.3 from https://physionet.org/content/ptb-xl/1.0.3/ (e.g. wget -r -N -c '
    '-np https://physionet.org/files/ptb-xl/1.0.3/, or the ZIP on that page) and pass its '
    'folder as the manual dir (config data.manual_dir). It must hold ptbxl_database.csv, '
    'scp_statements.csv and records500/ or records100/ (the 500 Hz or 100 Hz WFDB records; '
    'config data.ptbxl_records chooses, by default records500 where it exists).')
TABLES = {'ptbxl_database.csv': 'one row per ECG: report, scp_codes, age, sex, strat_fold',
          'scp_statements.csv': 'the SCP-ECG statement table'}
RECORD_FOLDERS = {  # builder config -> (folder, its filename column)
    'records500': ('filename_hr', 'the 500 Hz WFDB records, records500/NNNNN/NNNNN_hr.{hea,dat}'),
    'records100': ('filename_lr', 'the 100 Hz WFDB records, records100/NNNNN/NNNNN_lr.{hea,dat}'),
}


def choose_records(manual_dir, choice: str = 'auto') -> str:
  """The builder config for `choice` (auto, records500 or records100): auto takes records500
  where the manual dir has it, else records100."""
  if choice not in ('auto', *RECORD_FOLDERS):
    raise ValueError(f"data.ptbxl_records must be 'auto', 'records500' or 'records100', "
                     f'got {choice!r}')
  if choice != 'auto':
    return choice
  root = Path(manual_dir).expanduser() if manual_dir else None
  return 'records500' if root is None or (root / 'records500').exists() or not (
      root / 'records100').exists() else 'records100'


def read_scp_descriptions(path) -> dict[str, str]:
  """scp_statements.csv -> {SCP code: English description}."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  if not rows or 'description' not in rows[0]:
    raise ValueError(f'{path} has no description column: not the PTB-XL scp_statements.csv')
  code_column = next(iter(rows[0]))  # the first, unnamed column holds the code
  return {row[code_column].strip(): row['description'].strip() for row in rows
          if row[code_column].strip() and row['description'].strip()}


def scp_reports(codes: dict[str, float], descriptions: dict[str, str]) -> list[str]:
  """A record's SCP statements as English descriptions, most likely first (a stable sort, so
  equal likelihoods keep the record's order). Codes the table lacks are left out."""
  ordered = sorted(codes, key=lambda code: -codes[code])
  return [descriptions[code] for code in ordered if code in descriptions]


def parse_row(row: dict, filename_column: str = 'filename_hr') -> dict:
  """A ptbxl_database.csv row -> the fields we keep; ValueError names a broken field."""
  try:
    ecg_id = int(float(row['ecg_id']))
  except (KeyError, TypeError, ValueError):
    raise ValueError(f'broken ecg_id {row.get("ecg_id")!r}') from None
  try:
    fold = int(float(row['strat_fold']))
  except (KeyError, TypeError, ValueError):
    raise ValueError(f'broken strat_fold {row.get("strat_fold")!r}') from None
  try:
    codes = ast.literal_eval(row['scp_codes'])  # a dict literal; literal_eval runs no code
    if not isinstance(codes, dict):
      raise ValueError
    codes = {str(k): float(v) for k, v in codes.items()}
  except (KeyError, TypeError, ValueError, SyntaxError):
    raise ValueError(f'broken scp_codes {row.get("scp_codes")!r}') from None
  report = (row.get('report') or '').strip()
  if not report:
    raise ValueError('no report')
  filename = (row.get(filename_column) or '').strip()
  if not filename:
    raise ValueError(f'no {filename_column}')
  try:
    age = float(row.get('age') or 'nan')
  except ValueError:
    age = math.nan
  if age == AGE_OVER_89:
    age = AGE_OVER_89_KEPT_AS
  elif not 0 <= age <= 120:
    age = math.nan
  sex = SEX_CODES.get(str(row.get('sex', '')).strip().split('.')[0], '')
  return dict(ecg_id=ecg_id, fold=fold, codes=codes, report=report, filename=filename,
              age=age, sex=sex)


def read_example(task: tuple[str, dict]):
  """(root, parsed row) -> (key, example) or (key, SkippedRecord). Runs in worker processes."""
  root, row = task
  key = str(row['ecg_id'])
  try:
    ecg, nan_count = wfdb_records.read_ecg(Path(root) / row['filename'])
  except wfdb_records.SkippedRecord as error:
    return key, error
  return key, dict(
      record_id=key, ecg=ecg, reports=[row['report']], scp_reports=row['scp_reports'],
      scp_codes=list(row['codes']),
      scp_likelihoods=np.array(list(row['codes'].values()), np.float32),
      age=np.float32(row['age']), sex=row['sex'],
      heart_rate=np.float32(heart_rate.heart_rate(ecg)), nan_count=np.int32(nan_count))


class Ptbxl(tfds.core.GeneratorBasedBuilder):
  """PTB-XL 12-lead ECGs with their reports and SCP statements, ready for DiffuSETS."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'PTB-XL 1.0.3 at 1024 samples; strat_fold split 1-8/9/10.',
                   '1.1.0': 'records100 builder config; scp_reports (English SCP descriptions).'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=what)
                     for name, (_, what) in RECORD_FOLDERS.items()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  num_workers = 0  # record-reading processes; 0: one per CPU (set by `build`)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=wfdb_records.ecg_features(
            scp_reports=tfds.features.Sequence(tfds.features.Text()),
            scp_codes=tfds.features.Sequence(tfds.features.Text()),
            scp_likelihoods=tfds.features.Sequence(np.float32)),
        homepage='https://physionet.org/content/ptb-xl/1.0.3/',
        citation=('Wagner P. et al., PTB-XL, a large publicly available electrocardiography '
                  'dataset, Scientific Data 7, 154 (2020).'),
        license='CC BY 4.0',
    )

  def _split_generators(self, dl_manager):
    filename_column, folder_text = RECORD_FOLDERS[self.builder_config.name]
    required = dict(TABLES, **{self.builder_config.name: folder_text})
    root = wfdb_records.check_manual_files(dl_manager.manual_dir, required, INSTRUCTIONS)
    descriptions = read_scp_descriptions(root / 'scp_statements.csv')
    rows = {name: [] for name in FOLDS}
    skips = wfdb_records.SkipCounter('ptbxl', 'csv')
    with open(root / 'ptbxl_database.csv', newline='') as f:
      for line, row in enumerate(csv.DictReader(f), start=2):
        try:
          parsed = parse_row(row, filename_column)
          parsed['scp_reports'] = scp_reports(parsed['codes'], descriptions)
          if not parsed['scp_reports']:
            raise ValueError(f'no SCP code with a description in {sorted(parsed["codes"])}')
          split = next((name for name, folds in FOLDS.items() if parsed['fold'] in folds), None)
          if split is None:
            raise ValueError(f'strat_fold {parsed["fold"]} is not 1-10')
        except ValueError as error:
          skips.skip(f'line {line}', f'broken row: {error}')
          continue
        rows[split].append(parsed)
    skips.log_summary()
    return {name: self._generate_examples(root, split_rows, name)
            for name, split_rows in rows.items()}

  def _generate_examples(self, root, rows, split):
    yield from wfdb_records.generate_examples('ptbxl', split, read_example, root, rows,
                                              self.num_workers)
