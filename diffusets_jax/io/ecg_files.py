"""Writing generated ECGs: WFDB (.hea/.dat) and NPZ, each written whole or not at all."""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from diffusets_jax.datasets.preprocessing import DURATION_S, STANDARD_LEADS, resample

WFDB_SAMPLE_RATES = (102.4, 500.0)


def write_wfdb(ecg: np.ndarray, directory, record_name: str, sample_rate: float = 102.4,
               comments: list[str] | None = None) -> Path:
  """(1024, 12) mV ECG -> directory/record_name.hea + .dat (format 16, standard lead names).

  sample_rate 102.4 keeps the model's samples; 500 resamples (FFT) to 5000 samples.
  """
  if sample_rate not in WFDB_SAMPLE_RATES:
    raise ValueError(f'WFDB sample rate must be one of {WFDB_SAMPLE_RATES} Hz, got {sample_rate}')
  signal = np.asarray(ecg, np.float64)
  if sample_rate != signal.shape[0] / DURATION_S:
    signal = resample(signal, int(round(sample_rate * DURATION_S))).astype(np.float64)
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    import wfdb  # WFDB output only: sampling and its benchmarks run without the package
    wfdb.wrsamp(record_name, fs=sample_rate, units=['mV'] * 12, sig_name=list(STANDARD_LEADS),
                p_signal=signal, fmt=['16'] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                comments=comments or [], write_dir=tmp)
    for suffix in ('.dat', '.hea'):  # header last: a record is complete once its header exists
      os.replace(Path(tmp) / f'{record_name}{suffix}', directory / f'{record_name}{suffix}')
  return directory / f'{record_name}.hea'


def write_npz(path, **arrays) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.npz')
  os.close(fd)
  np.savez(tmp, **arrays)
  shutil.move(tmp, path)
  return path
