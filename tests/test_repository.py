"""What the repository carries: small enough to travel to a GPU machine with its wheels, and
bundled ECGs that are exactly PhysioNet's although stored compressed."""
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import wfdb

from diffusets_jax.datasets import compressed_records

ROOT = Path(__file__).resolve().parents[1]
MAX_TRACKED_MIB = 50  # the GPU machine takes 64 MiB, carried wheels included


def test_tracked_files_fit_the_gpu_transfer():
  listed = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True)
  if listed.returncode:
    pytest.skip('not a git checkout')
  paths = [ROOT / name for name in listed.stdout.decode().split('\0') if name]
  total = sum(path.stat().st_size for path in paths if path.is_file())
  largest = sorted(((p.stat().st_size, p) for p in paths if p.is_file()), reverse=True)[:3]
  assert total <= MAX_TRACKED_MIB * 2 ** 20, (
      f'tracked files take {total / 2**20:.1f} MiB, over {MAX_TRACKED_MIB} MiB; largest: '
      + ', '.join(f'{p.relative_to(ROOT)} ({s / 2**20:.1f} MiB)' for s, p in largest))


@pytest.mark.parametrize('folder, base', [('data/ludb', 'data'), ('data/ptbxl', '.')])
def test_bundled_records_are_the_physionet_records(folder, base):
  # Every original format-16 signal file, rebuilt from the compressed samples, has the
  # SHA-256 of PhysioNet's download; the other files are unchanged.
  assert compressed_records.verify(ROOT / folder, base) == []


def test_compression_is_lossless_and_reads_like_format_16(tmp_path):
  rng = np.random.default_rng(0)
  digital = np.cumsum(rng.integers(-40, 41, (1000, 12)), axis=0).astype(np.int64)
  digital[3, 4] = -32767  # the format's extremes survive too
  digital[5, 6] = 32767
  names = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6']
  wfdb.wrsamp('r', fs=100, units=['mV'] * 12, sig_name=names, d_signal=digital, fmt=['16'] * 12,
              adc_gain=[1000.0] * 12, baseline=[0] * 12, comments=['age: 50'],
              write_dir=str(tmp_path))
  plain = wfdb.rdrecord(str(tmp_path / 'r'))
  original_sha = hashlib.sha256((tmp_path / 'r.dat').read_bytes()).hexdigest()
  shutil.copytree(tmp_path, tmp_path.parent / 'plain_copy')
  written = compressed_records.compress_record(tmp_path / 'r')
  assert [p.name for p in written] == ['r_1.dat', 'r_2.dat'] and not (tmp_path / 'r.dat').exists()
  compressed = wfdb.rdrecord(str(tmp_path / 'r'))
  assert compressed.fmt == ['516'] * 12 and compressed.comments == ['age: 50']
  np.testing.assert_array_equal(compressed.p_signal, plain.p_signal)
  assert compressed_records.original_signal_sha256(tmp_path / 'r') == original_sha
  assert compressed_records.original_signal_sha256(tmp_path.parent / 'plain_copy' / 'r') == \
      original_sha
  assert sum(p.stat().st_size for p in written) < (tmp_path.parent / 'plain_copy' / 'r.dat'
                                                    ).stat().st_size
  with pytest.raises(ValueError, match='expected 16'):
    compressed_records.compress_record(tmp_path / 'r')  # already compressed
