"""TFDS builder `ludb`: LUDB v1.0.1, 200 real 12-lead ECGs with age, sex and ordered diagnoses.

The raw WFDB records are read from the manual dir (default: the bundled `data/ludb`). Each example:
- `ecg`: (1024, 12) float32 mV, standard lead order, FFT-resampled from 5000 samples at 500 Hz;
- `age` (years, NaN if unknown), `sex` ('M', 'F', or '' if unknown);
- `reports`: the ordered diagnosis lines, rhythm first, with the 'Rhythm: ' label and the final
  full stop removed;
- `heart_rate`: bpm measured from the signal (`diffusets_jax.datasets.heart_rate`);
- `nan_count`: NaN samples replaced by 0.
Splits are patient-level (LUDB has one record per subject): a fixed-seed permutation of the
record ids, 160 train / 20 val / 20 test.
Corrupt or unreadable records are skipped with a warning and counted.
"""
import logging
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
import wfdb

from diffusets_jax.datasets import heart_rate, wfdb_records

BUNDLED_DIR = Path(__file__).resolve().parents[2] / 'data' / 'ludb'
SPLIT_SIZES = {'train': 160, 'val': 20, 'test': 20}
SPLIT_SEED = 20200925  # fixed: the split must never change between builds

log = logging.getLogger(__name__)


def split_record_ids(record_ids, sizes=SPLIT_SIZES, seed=SPLIT_SEED) -> dict[str, list[str]]:
  """Deterministic split of sorted record ids; the last split takes any remainder."""
  ids = sorted(record_ids, key=lambda r: (len(r), r))
  order = np.random.default_rng(seed).permutation(len(ids))
  scale = len(ids) / sum(sizes.values())
  splits, start = {}, 0
  names = list(sizes)
  for i, name in enumerate(names):
    stop = len(ids) if i == len(names) - 1 else start + int(round(sizes[name] * scale))
    splits[name] = [ids[j] for j in order[start:stop]]
    start = stop
  return splits


def parse_comments(comments: list[str]) -> tuple[float, str, list[str]]:
  """LUDB header comments -> (age or NaN, sex or '', ordered report lines)."""
  age, sex, reports, in_diagnoses = float('nan'), '', [], False
  for line in comments:
    line = line.strip()
    if line.startswith('<age>:'):
      value = line.split(':', 1)[1].strip()
      age = float(value) if value.replace('.', '', 1).isdigit() else float('nan')
    elif line.startswith('<sex>:'):
      value = line.split(':', 1)[1].strip().upper()
      sex = value if value in ('M', 'F') else ''
    elif line.startswith('<diagnoses>:'):
      in_diagnoses = True
    elif in_diagnoses and line:
      if line.lower().startswith('rhythm:'):
        line = line.split(':', 1)[1].strip()
      reports.append(line.rstrip('. ').strip())
  return age, sex, reports


def read_record(path: Path) -> dict:
  """One WFDB record (path without extension) -> an example dict. Raises on bad records."""
  ecg, nan_count = wfdb_records.read_ecg(path)
  age, sex, reports = parse_comments(wfdb.rdheader(str(path)).comments)
  if not reports:
    raise ValueError('no diagnosis lines in the header')
  return dict(record_id=path.name, ecg=ecg, age=np.float32(age), sex=sex, reports=reports,
              heart_rate=np.float32(heart_rate.heart_rate(ecg)), nan_count=np.int32(nan_count))


class Ludb(tfds.core.GeneratorBasedBuilder):
  """LUDB 12-lead ECGs with their ordered diagnoses, ready for DiffuSETS."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'LUDB v1.0.1 at 1024 samples, 160/20/20 patient-level split.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Bundled: data/ludb in this repository. Otherwise put LUDB v1.0.1 (RECORDS and data/N.hea, '
      'data/N.dat from https://physionet.org/content/ludb/1.0.1/) in the manual dir.')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=wfdb_records.ecg_features(),
        homepage='https://physionet.org/content/ludb/1.0.1/',
        citation=('Kalyakulina A. et al., LUDB: A New Open-Access Validation Tool for '
                  'Electrocardiogram Delineation Algorithms, IEEE Access 8, 2020.'),
        license='ODC-By 1.0',
    )

  def _split_generators(self, dl_manager):
    root = Path(dl_manager.manual_dir) if dl_manager.manual_dir else BUNDLED_DIR
    records_file = root / 'RECORDS'
    if not records_file.exists():
      raise FileNotFoundError(f'{records_file} not found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    paths = {Path(line).name: root / line.strip()
             for line in records_file.read_text().split() if line.strip()}
    splits = split_record_ids(paths)
    return {name: self._generate_examples([paths[r] for r in ids], name)
            for name, ids in splits.items()}

  def _generate_examples(self, paths, split_name):
    skipped = []
    for path in paths:
      try:
        example = read_record(path)
      except Exception as error:  # a bad record must not stop the build
        skipped.append(path.name)
        log.warning('ludb %s: skipping record %s: %s', split_name, path.name, error)
        continue
      if example['nan_count']:
        log.warning('ludb: record %s had %d NaN samples, set to 0', path.name,
                    example['nan_count'])
      yield example['record_id'], example
    if skipped:
      log.warning('ludb %s: skipped %d corrupt record(s): %s', split_name, len(skipped),
                  ', '.join(skipped))


def build(data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None) -> Ludb:
  """Builds (once) and returns the ArrayRecord-backed `ludb` dataset under data_dir."""
  builder = Ludb(data_dir=str(data_dir), file_format='array_record')
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir or BUNDLED_DIR))
  builder.download_and_prepare(download_config=config)
  return builder
