"""Wheels for the GPU machine, which has no package registry: every package of
requirements-gpu.txt for CPython 3.12 on manylinux x86_64, into build/gpu-wheels/.

  python benchmarks/gpu_wheels.py          # or: make gpu-wheels

A package published as a wheel is downloaded for that platform; one published only as a source
distribution is built here into a wheel, which must then be pure Python (any platform) to run
there. benchmarks/gpu_check.py unpacks the folder; carry it to the machine with the repository
(run's `carry` of build/gpu-wheels).
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ['--python-version', '3.12', '--implementation', 'cp', '--platform',
            'manylinux_2_17_x86_64', '--platform', 'manylinux2014_x86_64', '--platform', 'any']


def requirements(path: Path) -> list[str]:
  lines = [line.split('#')[0].strip() for line in path.read_text().splitlines()]
  return [line for line in lines if line]


def fetch(requirement: str, out: Path) -> Path:
  """The wheel of one pinned requirement in `out`: downloaded, or built from its source."""
  with tempfile.TemporaryDirectory() as tmp:
    download = subprocess.run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
                               '--only-binary=:all:', *PLATFORM, '-d', tmp, requirement],
                              capture_output=True, text=True)
    if download.returncode:  # no wheel for the platform: build one from the source
      build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                              '--no-binary=:all:', '-w', tmp, requirement],
                             capture_output=True, text=True)
      if build.returncode:
        raise SystemExit(f'{requirement}: no wheel to download and none built:\n'
                         f'{download.stderr[-1500:]}\n{build.stderr[-1500:]}')
    wheel = next(Path(tmp).glob('*.whl'))
    if download.returncode and not wheel.name.endswith('-none-any.whl'):
      raise SystemExit(f'{requirement}: the wheel built here, {wheel.name}, is not pure Python '
                       f'and would not run on the GPU machine')
    return Path(shutil.copy(wheel, out / wheel.name))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--requirements', default=str(ROOT / 'requirements-gpu.txt'))
  parser.add_argument('--out', default=str(ROOT / 'build' / 'gpu-wheels'))
  args = parser.parse_args()
  out = Path(args.out)
  shutil.rmtree(out, ignore_errors=True)
  out.mkdir(parents=True)
  for requirement in requirements(Path(args.requirements)):
    wheel = fetch(requirement, out)
    print(f'{requirement}: {wheel.name}')
  size = sum(p.stat().st_size for p in out.iterdir())
  print(f'wrote {out} ({size / 2**20:.1f} MiB); carry it to the GPU machine with the repository')


if __name__ == '__main__':
  main()
