"""TFDS builder `mimic_iv_ecg`: MIMIC-IV-ECG 1.0, about 800,000 12-lead ECGs with machine reports.

The manual dir is the MIMIC-IV-ECG 1.0 folder (see MANUAL_DOWNLOAD_INSTRUCTIONS). Each example:
- `ecg`: (1024, 12) float32 mV, standard lead order (the raw files have aVF before aVL; leads
  are matched by name), FFT-resampled from the 500 Hz record;
- `reports`: the non-empty `report_0` ... `report_17` of machine_measurements.csv, in order;
- `heart_rate` (bpm): 60000 / `rr_interval` when rr_interval is 300-1500 ms (40-200 bpm),
  otherwise measured from the signal; `heart_rate_source` says which. (The reference meant to do
  this but compared the wrong units, so it always measured; spec section 7.)
- `age`, `sex`: `anchor_age` and `gender` from MIMIC-IV's hosp/patients.csv when its path is
  given (credentialed separately); otherwise NaN and '' (unknown, filled as documented in
  docs/text_conditioning.md);
- `subject_id`, `nan_count`.
Splits are patient-disjoint: a subject's hash puts all its records in one split (90/5/5 %).

Cleaning: a record is left out when it has no non-empty report, no machine_measurements row,
a missing or unreadable file, fewer than 12 leads, a duration other than 10 s, or a lead with
no finite sample; CSV rows with broken ids are skipped. All are counted and logged per reason.
"""
import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from diffusets_jax.datasets import heart_rate, wfdb_records

NUM_REPORTS = 18
RR_INTERVAL_MS = (300.0, 1500.0)
SPLIT_FRACTIONS = {'train': 0.90, 'val': 0.05, 'test': 0.05}
INSTRUCTIONS = (
    'Download MIMIC-IV-ECG 1.0 from https://physionet.org/content/mimic-iv-ecg/1.0/ (open '
    'access; e.g. wget -r -N -c -np https://physionet.org/files/mimic-iv-ecg/1.0/, about 90 GB) '
    'and pass its folder as the manual dir (config data.manual_dir). It must hold '
    'record_list.csv, machine_measurements.csv and files/pNNNN/pSUBJECT/sSTUDY/STUDY.{hea,dat}. '
    'For age and sex, also give MIMIC-IV\'s hosp/patients.csv (credentialed access, '
    'https://physionet.org/content/mimiciv/) as config data.patients_csv.')
REQUIRED = {'record_list.csv': 'subject_id, study_id and path of every record',
            'machine_measurements.csv': 'report_0..report_17 and rr_interval per study',
            'files': 'the WFDB records, files/pNNNN/pSUBJECT/sSTUDY/STUDY.{hea,dat}'}


def subject_split(subject_id: int) -> str:
  """The split of every record of a subject: a stable hash of the id, not the row order."""
  digest = hashlib.sha256(str(subject_id).encode()).digest()
  position = int.from_bytes(digest[:8], 'big') / 2 ** 64
  cumulative = 0.0
  for name, fraction in SPLIT_FRACTIONS.items():
    cumulative += fraction
    if position < cumulative:
      return name
  return name


def rr_heart_rate(rr_interval) -> float:
  """60000 / rr_interval (ms) when it lies in 300-1500 ms, else NaN (then measured)."""
  try:
    rr = float(rr_interval)
  except (TypeError, ValueError):
    return math.nan
  return 60000.0 / rr if RR_INTERVAL_MS[0] <= rr <= RR_INTERVAL_MS[1] else math.nan


def read_measurements(path: Path, skips) -> dict[int, tuple[list[str], float]]:
  """study_id -> (its non-empty reports in order, heart rate from rr_interval or NaN)."""
  out = {}
  with open(path, newline='') as f:
    for line, row in enumerate(csv.DictReader(f), start=2):
      try:
        study = int(row['study_id'])
      except (KeyError, TypeError, ValueError):
        skips.skip(f'machine_measurements.csv line {line}',
                   f'broken row: study_id {row.get("study_id")!r}')
        continue
      reports = [(row.get(f'report_{i}') or '').strip() for i in range(NUM_REPORTS)]
      out[study] = ([r for r in reports if r], rr_heart_rate(row.get('rr_interval')))
  return out


def read_patients(path, skips) -> dict[int, tuple[float, str]]:
  """subject_id -> (anchor_age, 'M'/'F') from MIMIC-IV hosp/patients.csv."""
  out = {}
  with open(path, newline='') as f:
    for line, row in enumerate(csv.DictReader(f), start=2):
      try:
        subject = int(row['subject_id'])
        age = float(row['anchor_age'])
      except (KeyError, TypeError, ValueError):
        skips.skip(f'patients.csv line {line}', 'broken row: subject_id or anchor_age')
        continue
      gender = (row.get('gender') or '').strip().upper()
      out[subject] = (age if 0 <= age <= 120 else math.nan, gender if gender in 'MF' else '')
  return out


def read_example(task: tuple[str, dict]):
  """(root, joined row) -> (key, example) or (key, SkippedRecord). Runs in worker processes."""
  root, row = task
  key = str(row['study_id'])
  try:
    ecg, nan_count = wfdb_records.read_ecg(Path(root) / row['path'])
  except wfdb_records.SkippedRecord as error:
    return key, error
  rate, source = row['rr_heart_rate'], 'rr_interval'
  if not math.isfinite(rate):
    rate, source = float(heart_rate.heart_rate(ecg)), 'signal'
  return key, dict(
      record_id=key, subject_id=np.int64(row['subject_id']), ecg=ecg, reports=row['reports'],
      age=np.float32(row['age']), sex=row['sex'], heart_rate=np.float32(rate),
      heart_rate_source=source, nan_count=np.int32(nan_count))


class MimicIvEcg(tfds.core.GeneratorBasedBuilder):
  """MIMIC-IV-ECG 12-lead ECGs with their ordered machine reports, ready for DiffuSETS."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'MIMIC-IV-ECG 1.0 at 1024 samples; patient-disjoint 90/5/5 split.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  num_workers = 0        # record-reading processes; 0: one per CPU (set by `build`)
  patients_csv = ''      # MIMIC-IV hosp/patients.csv, or '' (age and sex unknown)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=wfdb_records.ecg_features(subject_id=np.int64,
                                           heart_rate_source=tfds.features.Text()),
        homepage='https://physionet.org/content/mimic-iv-ecg/1.0/',
        citation=('Gow B. et al., MIMIC-IV-ECG: Diagnostic Electrocardiogram Matched Subset '
                  '(version 1.0), PhysioNet (2023).'),
        license='ODC-ODbL 1.0',
    )

  def _split_generators(self, dl_manager):
    root = wfdb_records.check_manual_files(dl_manager.manual_dir, REQUIRED, INSTRUCTIONS)
    skips = wfdb_records.SkipCounter('mimic_iv_ecg', 'csv')
    measurements = read_measurements(root / 'machine_measurements.csv', skips)
    patients = {}
    if self.patients_csv:
      path = Path(self.patients_csv).expanduser()
      if not path.exists():
        raise FileNotFoundError(f'data.patients_csv {path} not found (MIMIC-IV hosp/patients.csv,'
                                f' with subject_id, gender, anchor_age); set it to \'\' to build '
                                f'without age and sex')
      patients = read_patients(path, skips)
    rows = {name: [] for name in SPLIT_FRACTIONS}
    with open(root / 'record_list.csv', newline='') as f:
      for line, row in enumerate(csv.DictReader(f), start=2):
        try:
          subject, study = int(row['subject_id']), int(row['study_id'])
          path = row['path'].strip()
          if not path:
            raise ValueError
        except (KeyError, TypeError, ValueError, AttributeError):
          skips.skip(f'record_list.csv line {line}', 'broken row: subject_id, study_id or path')
          continue
        if study not in measurements:
          skips.skip(str(study), 'no machine_measurements row')
          continue
        reports, rr_rate = measurements[study]
        if not reports:
          skips.skip(str(study), 'no non-empty report')
          continue
        age, sex = patients.get(subject, (math.nan, ''))
        rows[subject_split(subject)].append(dict(
            subject_id=subject, study_id=study, path=path, reports=reports,
            rr_heart_rate=rr_rate, age=age, sex=sex))
    skips.log_summary()
    return {name: self._generate_examples(root, split_rows, name)
            for name, split_rows in rows.items()}

  def _generate_examples(self, root, rows, split):
    yield from wfdb_records.generate_examples('mimic_iv_ecg', split, read_example, root, rows,
                                              self.num_workers)
