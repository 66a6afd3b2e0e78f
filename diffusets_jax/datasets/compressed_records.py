"""Bundled WFDB records stored losslessly compressed: signal files in WFDB format 516 (FLAC),
which wfdb reads exactly like the format-16 files PhysioNet distributes (through soundfile).

The digital samples are kept bit for bit; only the container changes. The original download's
checksums stay beside the data (PHYSIONET_SHA256SUMS): `verify` rebuilds each original format-16
signal file's bytes from the compressed one and checks them against it, so a bundled copy is
provably the PhysioNet record. A plain WFDB download (format 16) reads unchanged.
"""
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import wfdb

COMPRESSED_FORMAT = '516'  # FLAC, 16 bits per sample
ORIGINAL_SUMS = 'PHYSIONET_SHA256SUMS'


def format16_bytes(digital: np.ndarray) -> bytes:
  """The bytes of a WFDB format-16 signal file holding digital samples (length, channels):
  16-bit little-endian two's complement, channels interleaved."""
  digital = np.asarray(digital)
  if digital.min(initial=0) < -2 ** 15 or digital.max(initial=0) >= 2 ** 15:
    raise ValueError('samples outside the 16-bit range cannot be format 16')
  return np.ascontiguousarray(digital, '<i2').tobytes()


def compress_record(record) -> list[Path]:
  """Rewrites one WFDB record (path without extension; format-16 signal file) in format 516, in
  place: a new header and signal files (wfdb puts at most 8 channels in one FLAC file), the
  old signal file removed. Returns the new signal files."""
  record = Path(record)
  source = wfdb.rdrecord(str(record), physical=False)
  if set(source.fmt) != {'16'}:
    raise ValueError(f'{record}: signal format {sorted(set(source.fmt))}, expected 16')
  old_files = {record.parent / name for name in source.file_name}
  with tempfile.TemporaryDirectory(dir=record.parent) as tmp:
    wfdb.wrsamp(record.name, fs=source.fs, units=source.units, sig_name=source.sig_name,
                d_signal=source.d_signal, fmt=[COMPRESSED_FORMAT] * source.n_sig,
                adc_gain=source.adc_gain, baseline=source.baseline, comments=source.comments,
                write_dir=tmp)
    written = sorted(Path(tmp).glob(f'{record.name}_*.dat'))
    check = wfdb.rdrecord(str(Path(tmp) / record.name), physical=False)
    if not np.array_equal(check.d_signal, source.d_signal):
      raise RuntimeError(f'{record}: the compressed samples differ from the original')
    for path in written:
      os.replace(path, record.parent / path.name)
    for path in old_files - {record.parent / p.name for p in written}:
      path.unlink()
    os.replace(Path(tmp) / f'{record.name}.hea', record.with_suffix('.hea'))  # header last
  return [record.parent / path.name for path in written]


def original_signal_sha256(record) -> str:
  """SHA-256 of the format-16 signal file PhysioNet distributes for this record, rebuilt from
  its (possibly compressed) digital samples."""
  digital = wfdb.rdrecord(str(record), physical=False).d_signal
  return hashlib.sha256(format16_bytes(digital)).hexdigest()


def read_sums(path) -> dict[str, str]:
  """{relative path: sha256} of a sha256sum file ('./' prefixes dropped)."""
  sums = {}
  for line in Path(path).read_text().splitlines():
    if line.strip():
      digest, name = line.split(maxsplit=1)
      sums[name.strip().removeprefix('./')] = digest
  return sums


def verify(folder, base='.') -> list[str]:
  """Mismatches of the bundled files under `folder` against the PhysioNet checksums in
  folder/PHYSIONET_SHA256SUMS (paths relative to folder/base): each original signal file is
  rebuilt from its record; other files must be unchanged, except headers (rewritten for the
  new signal files). Empty when every record is the PhysioNet one."""
  folder = Path(folder)
  problems = []
  for name, digest in read_sums(folder / ORIGINAL_SUMS).items():
    path = folder / base / name
    if name.endswith('.hea'):
      continue
    if name.endswith('.dat'):
      try:
        actual = original_signal_sha256(path.with_suffix(''))
      except (FileNotFoundError, ValueError) as error:
        problems.append(f'{name}: {error}')
        continue
    elif path.is_file():
      actual = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
      problems.append(f'{name}: missing')
      continue
    if actual != digest:
      problems.append(f'{name}: SHA-256 {actual[:12]}... differs from PhysioNet\'s {digest[:12]}...')
  return problems
