"""Compress a folder of WFDB records losslessly (signal files to WFDB format 516, FLAC), or
verify a compressed folder against PhysioNet's checksums.

  python scripts/compress_records.py data/ludb --base data     # LUDB: sums relative to data/
  python scripts/compress_records.py data/ptbxl
  python scripts/compress_records.py data/ptbxl --verify

Compressing reads RECORDS, keeps the folder's SHA256SUMS as PHYSIONET_SHA256SUMS (the original
download's), rewrites each record in place, writes a new SHA256SUMS of the bundled files, and
verifies. Verifying rebuilds every original signal file from the compressed samples and checks it
against PHYSIONET_SHA256SUMS (diffusets_jax/datasets/compressed_records.py).
"""
import argparse
import hashlib
import sys
from pathlib import Path

from tqdm import tqdm

from diffusets_jax.datasets import compressed_records


def write_sums(folder: Path, base: Path) -> None:
  """SHA256SUMS of the files now under folder/base, paths written as in the original list."""
  original = (folder / compressed_records.ORIGINAL_SUMS).read_text()
  prefix = './' if './' in original.split('\n', 1)[0] else ''
  files = sorted(p for p in (folder / base).rglob('*') if p.is_file()
                 and p.name not in ('SHA256SUMS', 'README.md', compressed_records.ORIGINAL_SUMS))
  lines = [f'{hashlib.sha256(p.read_bytes()).hexdigest()}  {prefix}{p.relative_to(folder / base)}'
           for p in files]
  (folder / 'SHA256SUMS').write_text('\n'.join(lines) + '\n')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('folder', type=Path, help='dataset folder with RECORDS and SHA256SUMS')
  parser.add_argument('--base', default='.', help='folder the checksum paths are relative to, '
                      'inside the dataset folder (default: the folder itself)')
  parser.add_argument('--verify', action='store_true', help='only verify')
  args = parser.parse_args()
  folder = args.folder
  if not args.verify:
    original = folder / compressed_records.ORIGINAL_SUMS
    if original.exists():
      raise SystemExit(f'{original} exists: {folder} is compressed already (use --verify)')
    (folder / 'SHA256SUMS').rename(original)
    records = (folder / 'RECORDS').read_text().split()
    for name in tqdm(records, desc=f'compress {folder}', unit='record'):
      compressed_records.compress_record(folder / name)
    write_sums(folder, Path(args.base))
  problems = compressed_records.verify(folder, args.base)
  if problems:
    print('\n'.join(problems[:20]), file=sys.stderr)
    raise SystemExit(f'{len(problems)} file(s) differ from PhysioNet\'s')
  print(f'{folder}: every record equals PhysioNet\'s ({compressed_records.ORIGINAL_SUMS})')


if __name__ == '__main__':
  main()
