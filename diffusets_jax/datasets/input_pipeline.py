"""The real records a training or evaluation run reads: the datasets built (TFDS), their splits
opened and selected, and rows read by index. Which rows make a batch, and their layout over
devices, is batching.py's (it needs no dataset library, so the diffusion stage imports none).
"""
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from diffusets_jax.datasets import ludb, mimic_iv_ecg, ptbxl


DATASETS = ('ludb', 'ptbxl', 'mimic_iv_ecg')
REPO_DATA = Path(__file__).resolve().parents[2] / 'data'
BUNDLED = {'ludb': REPO_DATA / 'ludb', 'ptbxl': REPO_DATA / 'ptbxl'}  # shipped in data/
PTBXL_REPORTS = ('scp', 'report')


def dataset_names(data_config) -> list[str]:
  """data.name, 'ptbxl' or several joined by '+' ('ptbxl+ludb'), as a list of known names."""
  names = [name.strip() for name in data_config.name.split('+')]
  unknown = [name for name in names if name not in DATASETS]
  if unknown:
    raise ValueError(f'unknown dataset {unknown[0]!r}; available: {list(DATASETS)}, or several '
                     f'joined by "+" (e.g. ptbxl+ludb)')
  if len(set(names)) != len(names):
    raise ValueError(f'data.name {data_config.name!r} names a dataset twice')
  return names


def manual_dirs(data_config) -> dict[str, str]:
  """Each dataset's raw folder: data.manual_dir ('+'-joined like data.name when there are
  several); an empty entry means the bundled copy in data/ (ludb, ptbxl)."""
  names = dataset_names(data_config)
  given = data_config.manual_dir.split('+') if data_config.manual_dir else [''] * len(names)
  if len(given) != len(names):
    raise ValueError(f'data.manual_dir {data_config.manual_dir!r} names {len(given)} folder(s) '
                     f'for the {len(names)} datasets of data.name {data_config.name!r}; join '
                     f'them with "+" in the same order, or leave it empty for the bundled data')
  folders = {}
  for name, folder in zip(names, given):
    if not folder and name not in BUNDLED:
      raise ValueError(f'{name} is not bundled: set data.manual_dir to its downloaded folder '
                       f'(docs/datasets.md)')
    folders[name] = str(Path(folder).expanduser()) if folder else str(BUNDLED[name])
  return folders


def build_one(data_config, name: str, manual_dir: str):
  """Builds (once) dataset `name` under data.tfds_dir from its raw folder."""
  if name == 'ludb':
    return ludb.build(data_config.tfds_dir, manual_dir)
  kwargs = dict(data_dir=str(data_config.tfds_dir), file_format='array_record')
  if name == 'ptbxl':
    builder = ptbxl.Ptbxl(config=ptbxl.choose_records(manual_dir, data_config.ptbxl_records),
                          **kwargs)
  else:
    builder = mimic_iv_ecg.MimicIvEcg(**kwargs)
    builder.patients_csv = data_config.patients_csv
  builder.num_workers = data_config.num_workers
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir))
  return builder


def build(data_config) -> dict:
  """Builds (once) every dataset of the config; {name: builder}, in data.name order. TFDS's
  progress bars are off: a build logs its skips, and training shows its own progress."""
  tfds.disable_progress_bar()
  if data_config.ptbxl_reports not in PTBXL_REPORTS:
    raise ValueError(f'data.ptbxl_reports must be one of {PTBXL_REPORTS}, got '
                     f'{data_config.ptbxl_reports!r}')
  return {name: build_one(data_config, name, folder)
          for name, folder in manual_dirs(data_config).items()}


class FieldRenamed:
  """A data source whose examples show field `source_key` as `key` (e.g. PTB-XL's English
  `scp_reports` as the `reports` every reader uses)."""

  def __init__(self, source, key: str, source_key: str):
    self.source, self.key, self.source_key = source, key, source_key

  def __len__(self):
    return len(self.source)

  def __getitems__(self, index):
    return [dict(example, **{self.key: example[self.source_key]})
            for example in self.source.__getitems__(index)]


class Concatenated:
  """Several data sources read as one: index i runs through the first, then the second..."""

  def __init__(self, sources):
    self.sources = list(sources)
    self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

  def __len__(self):
    return int(self.offsets[-1])

  def __getitems__(self, index):
    index = np.asarray(index, np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(self)):
      raise IndexError(f'index out of range for {len(self)} examples')
    which = np.searchsorted(self.offsets, index, side='right') - 1
    out = [None] * len(index)
    for s, source in enumerate(self.sources):
      positions = np.flatnonzero(which == s)
      if len(positions):
        examples = source.__getitems__([int(i) for i in index[positions] - self.offsets[s]])
        for position, example in zip(positions, examples):
          out[position] = example
    return out


class Selected:
  """The examples of a data source at the given indices, in that order."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self.indices)

  def __getitems__(self, index):
    return self.source.__getitems__([int(i) for i in self.indices[np.asarray(index, np.int64)]])


def up_to_ecg_id(source, max_ecg_id: int):
  """PTB-XL examples with ecg_id <= max_ecg_id: the same records from a full PhysioNet download
  as from a subset holding only those ids (data.ptbxl_max_ecg_id)."""
  ids = np.array([int(i) for i in read_split_metadata(source)['record_id']], np.int64)
  return Selected(source, np.flatnonzero(ids <= max_ecg_id))


def open_split(data_config, split: str, only: str | None = None):
  """Random-access ArrayRecord source of one split (no TensorFlow at read time); builds once.
  Several datasets are concatenated in data.name order; `only` keeps one of them. PTB-XL's
  `reports` are its English SCP descriptions when data.ptbxl_reports is 'scp', and only its
  records up to data.ptbxl_max_ecg_id are read when that is set."""
  builders = build(data_config)
  if only is not None:
    if only not in builders:
      raise ValueError(f'dataset {only!r} is not among data.name {data_config.name!r}')
    builders = {only: builders[only]}
  sources = []
  for name, builder in builders.items():
    source = builder.as_data_source(split)
    if name == 'ptbxl' and data_config.ptbxl_reports == 'scp':
      source = FieldRenamed(source, 'reports', 'scp_reports')
    if name == 'ptbxl' and data_config.ptbxl_max_ecg_id > 0:
      source = up_to_ecg_id(source, data_config.ptbxl_max_ecg_id)
    sources.append(source)
  return sources[0] if len(sources) == 1 else Concatenated(sources)


def read_all(source, keys=('ecg', 'age', 'sex', 'reports', 'heart_rate', 'record_id')) -> dict:
  """Every example of a (small) source as stacked numpy arrays / lists, in source order."""
  examples = source.__getitems__(list(range(len(source))))
  out = {}
  for key in keys:
    values = [ex[key] for ex in examples]
    if key in ('sex', 'record_id'):
      out[key] = [v.decode() for v in values]
    elif key == 'reports':
      out[key] = [[r.decode() for r in v] for v in values]
    else:
      out[key] = np.stack(values)
  return out


METADATA = ('age', 'sex', 'reports', 'heart_rate', 'record_id')


def read_metadata(source, index) -> dict:
  """The non-signal fields of the examples at `index`, as read_all gives them."""
  examples = source.__getitems__([int(i) for i in index])
  return dict(age=np.array([ex['age'] for ex in examples], np.float32),
              heart_rate=np.array([ex['heart_rate'] for ex in examples], np.float32),
              sex=[ex['sex'].decode() for ex in examples],
              record_id=[ex['record_id'].decode() for ex in examples],
              reports=[[r.decode() for r in ex['reports']] for ex in examples])


def read_split_metadata(source, chunk: int = 1024) -> dict:
  """read_metadata of a whole split, read `chunk` examples at a time (memory stays flat)."""
  parts = [read_metadata(source, np.arange(start, min(start + chunk, len(source))))
           for start in range(0, len(source), chunk)]
  return {k: (np.concatenate([p[k] for p in parts]) if k in ('age', 'heart_rate')
              else sum((p[k] for p in parts), [])) for k in METADATA}


def read_rows(source, index, key: str) -> np.ndarray:
  """Field `key` of the examples at `index` (in that order), stacked: a random-access read of
  only the rows a batch needs, so no split is ever held in memory whole."""
  return np.stack([example[key] for example in source.__getitems__([int(i) for i in index])])
