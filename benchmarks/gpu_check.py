"""The whole GPU check in one command: our sampling throughput, whole sampling loops raced
against PyTorch, the per-step side by side, and paper-size diffusion training against PyTorch.

  python benchmarks/gpu_check.py                  # on the GPU machine (about 8 min on an H100)
  python benchmarks/gpu_check.py --smoke          # the same parts at micro size, on a CPU

Wheels of what the machine lacks (`make gpu-wheels` builds them into build/gpu-wheels/, which
is carried with the repository) are unpacked into a temporary folder put on the path of every
part; nothing is installed on the machine. Each part runs in its own process under its own time
budget, so that what finished survives a part that fails or runs out of time. One persistent
XLA compilation cache serves every part. Writes to $OUT when that variable is set (the GPU
machine's return folder), else to benchmarks/results/gpu_check/: gpu_check.tar.gz (every part's
JSON and markdown), summary.md and summary.json (parts, times, the targets met or missed), and
gpu_check.log (everything the parts printed).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / 'build' / 'gpu-wheels'

# name, script, arguments on the GPU, arguments with --smoke, seconds allowed on the GPU
PARTS = (
    ('sampling', 'benchmarks/throughput.py',
     ['--sections', 'sampling', '--samplers', 'ddim', 'ddpm', '--batch', '1', '64', '512',
      '--precision', 'float32', 'bfloat16', '--conv_forms', 'auto', '--repeats', '3'],
     ['--sections', 'sampling', '--samplers', 'ddim', 'ddpm', '--batch', '1',
      '--precision', 'float32', '--conv_forms', 'auto', '--repeats', '1', '--size', 'micro'],
     130),
    ('loops', 'benchmarks/pytorch_reference/loops.py',
     ['--batch', '1', '512', '--repeats', '3'],
     ['--batch', '1', '--repeats', '1', '--torch_modes', 'eager', '--size', 'micro'],
     150),
    ('side_by_side', 'benchmarks/pytorch_reference/side_by_side.py',
     ['--batch', '1', '64', '--precision', 'float32', 'bfloat16', '--torch_modes', 'eager',
      'compile', 'reduce-overhead', '--train_batch', '--repeats', '20'],
     ['--batch', '1', '--precision', 'float32', '--torch_modes', 'eager', '--train_batch',
      '--repeats', '1', '--size', 'micro'],
     75),
    ('training', 'benchmarks/pytorch_reference/side_by_side.py',
     ['--batch', '--train_batch', '256', '--train_precision', 'float32', 'bfloat16',
      '--torch_modes', 'eager', 'compile', '--repeats', '5'],
     ['--batch', '--train_batch', '4', '--train_precision', 'float32', '--torch_modes', 'eager',
      '--repeats', '1', '--size', 'micro'],
     110),
)
SMOKE_SECONDS = 300  # per part on a CPU (generous: the suite runs parts side by side)


def unpack_wheels(folder: Path, target: Path) -> list[str]:
  """Unpacks every wheel in `folder` into `target` (a wheel is a zip of its import tree)."""
  names = []
  for wheel in sorted(folder.glob('*.whl')):
    with zipfile.ZipFile(wheel) as archive:
      archive.extractall(target)
    names.append(wheel.name)
  return names


def versions() -> dict:
  """The machine and the software the parts run on, read in a fresh process (after the
  wheels are on the path)."""
  code = '''
import json, platform, jax, jaxlib, flax
out = dict(python=platform.python_version(), jax=jax.__version__, jaxlib=jaxlib.__version__,
           flax=flax.__version__, backend=jax.default_backend(),
           devices=[d.device_kind for d in jax.devices()])
try:
  import torch
  out.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
             torch_device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')
except ImportError:
  out['torch'] = None
print(json.dumps(out))
'''
  run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       env=os.environ.copy())
  if run.returncode:
    return dict(error=run.stderr[-2000:])
  return json.loads(run.stdout.strip().splitlines()[-1])


def run_part(name, script, arguments, seconds, work: Path, log) -> dict:
  """Runs one part in its own process under `seconds`; its report goes to work/NAME.json."""
  out = work / f'{name}.json'
  command = [sys.executable, script, *arguments, '--out', str(out)]
  log.write(f'\n=== {name}: {" ".join(command)}\n')
  log.flush()
  start = time.time()
  try:
    run = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                         timeout=seconds, env=os.environ.copy())
    status = 'ok' if run.returncode == 0 else f'failed (exit {run.returncode})'
  except subprocess.TimeoutExpired:
    status = f'stopped at its budget of {seconds} s'
  result = dict(part=name, status=status, wall_s=round(time.time() - start, 1),
                budget_s=seconds, command=' '.join(['python', script, *arguments]))
  if out.exists():
    result['report'] = json.loads(out.read_text())
  return result


def row_errors(report: dict) -> list[str]:
  """The errors recorded in a part's rows (a configuration that failed inside the part)."""
  rows = [r for key in ('sampling', 'training', 'timings', 'rows') for r in report.get(key, [])]
  return [r['error'] for r in rows if 'error' in r]


def targets(parts: dict) -> list[dict]:
  """The issue's targets, from the parts' reports (None where the figure is missing)."""
  def rows(part, key):
    return parts.get(part, {}).get('report', {}).get(key, [])

  def speedup(batch, against, part='unet_step', precision='float32', source='side_by_side'):
    return next((s['speedup'] for s in rows(source, 'speedup_of_ours')
                 if s['batch'] == batch and s['part'] == part and s['precision'] == precision
                 and s['against'] == against), None)

  def ecgs_per_s(sampler_prefix, batch):
    return max((r['ecgs_per_s'] for r in rows('sampling', 'sampling')
                if r['sampler'].startswith(sampler_prefix) and r['batch'] == batch
                and 'ecgs_per_s' in r), default=None)

  def loop_margin(batch):
    ours = [r for r in rows('loops', 'rows') if r['batch'] == batch and r['framework'] == 'flax']
    theirs = [r for r in rows('loops', 'rows') if r['batch'] == batch and 'ours_faster' in r]
    if not ours or not theirs:
      return None
    return min(r['ours_faster'] for r in theirs)  # against the fastest PyTorch mode

  checks = [
      ('U-Net step vs PyTorch eager, batch 1 (x)', speedup(1, 'pytorch_reference eager'), 10),
      ('U-Net step vs torch.compile, batch 64 (x)', speedup(64, 'pytorch_reference compile'), 1),
      ('U-Net step vs CUDA graphs, batch 64 (x)',
       speedup(64, 'pytorch_reference reduce-overhead'), 1),
      ('DDPM-1000 at batch 512 (ECGs/s)', ecgs_per_s('ddpm', 512), 100),
      ('DDIM-50 at batch 512 (ECGs/s)', ecgs_per_s('ddim', 512), 2000),
      ('whole loops vs the best PyTorch mode, batch 1 (x)', loop_margin(1), 1),
      ('whole loops vs the best PyTorch mode, batch 512 (x)', loop_margin(512), 1),
      ('diffusion training vs PyTorch eager, batch 256, float32 (x)',
       speedup(256, 'pytorch_reference eager', 'diffusion_train_step', source='training'), 2),
  ]
  return [dict(target=name, value=value, at_least=bound,
               met=None if value is None else value >= bound) for name, value, bound in checks]


def summary_markdown(summary: dict) -> str:
  env = summary['versions']
  lines = ['# GPU check' + (' (smoke: micro sizes, figures mean nothing)' if summary['smoke']
                             else ''), '',
           f"Device: {', '.join(env.get('devices', ['?']))} ({env.get('backend')}); JAX "
           f"{env.get('jax')}, jaxlib {env.get('jaxlib')}, Flax {env.get('flax')}, PyTorch "
           f"{env.get('torch')} (CUDA {env.get('torch_cuda')}), Python {env.get('python')}; "
           f"{summary['platform']}.", '',
           f"Command: `{summary['command']}`; wheels unpacked: "
           f"{', '.join(summary['wheels']) or 'none'}; total {summary['wall_s']} s.", '',
           '| part | status | s (budget) | errors inside |', '|---|---|---|---|']
  for part in summary['parts']:
    lines.append(f"| {part['part']} | {part['status']} | {part['wall_s']} ({part['budget_s']}) "
                 f"| {len(part['errors'])} |")
  lines += ['', '| target | value | at least | met |', '|---|---|---|---|']
  for t in summary['targets']:
    met = '' if t['met'] is None else ('yes' if t['met'] else 'no')
    lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else 'n/a'} | "
                 f"{t['at_least']} | {met} |")
  return '\n'.join(lines) + '\n'


def write_outputs(out: Path, work: Path, summary: dict) -> None:
  """summary.json, summary.md and the archive of every part's files: rewritten after each
  part, so that a run stopped later keeps what finished."""
  (out / 'summary.json').write_text(json.dumps(summary, indent=1))
  (out / 'summary.md').write_text(summary_markdown(summary))
  tmp = out / '.gpu_check.tar.gz'
  with tarfile.open(tmp, 'w:gz') as archive:
    for path in sorted(work.iterdir()):
      if path.suffix in ('.json', '.md'):
        archive.add(path, arcname=path.name)
    archive.add(out / 'summary.md', arcname='summary.md')
  tmp.replace(out / 'gpu_check.tar.gz')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--smoke', action='store_true',
                      help='micro sizes and eager PyTorch only: checks on a CPU that every part runs')
  parser.add_argument('--parts', nargs='+', default=[p[0] for p in PARTS],
                      choices=[p[0] for p in PARTS])
  parser.add_argument('--wheels', default=str(WHEELS), help='folder of wheels to unpack')
  parser.add_argument('--out', default=None,
                      help='output folder (default: $OUT, else benchmarks/results/gpu_check)')
  args = parser.parse_args(argv)
  out = Path(args.out or os.environ.get('OUT') or ROOT / 'benchmarks' / 'results' / 'gpu_check')
  out.mkdir(parents=True, exist_ok=True)
  start = time.time()
  with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp:
    tmp = Path(tmp)
    work, packages = tmp / 'parts', tmp / 'packages'
    work.mkdir()
    wheels = unpack_wheels(Path(args.wheels), packages) if Path(args.wheels).is_dir() else []
    os.environ['PYTHONPATH'] = os.pathsep.join(
        [str(packages), str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    # One on-disk cache for every part's compiled programs, kept with the results' machine.
    os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(ROOT / '.cache' / 'xla_gpu_check'))
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    summary = dict(smoke=args.smoke, command=' '.join(['python', 'benchmarks/gpu_check.py']
                                                      + (argv or sys.argv[1:])),
                   platform=platform.platform(), wheels=wheels, versions=versions(), parts=[],
                   targets=[], wall_s=0.0)
    print(json.dumps(summary['versions']), flush=True)
    with open(out / 'gpu_check.log', 'w') as log:
      log.write(json.dumps(summary['versions']) + '\n')
      for name, script, gpu_args, smoke_args, seconds in PARTS:
        if name not in args.parts:
          continue
        part = run_part(name, script, smoke_args if args.smoke else gpu_args,
                        SMOKE_SECONDS if args.smoke else seconds, work, log)
        part['errors'] = row_errors(part.get('report', {}))
        print(f"{name}: {part['status']} in {part['wall_s']} s, {len(part['errors'])} "
              f"configuration(s) failed inside", flush=True)
        summary['parts'].append({k: v for k, v in part.items() if k != 'report'})
        reports = {p['part']: dict(report=json.loads((work / f"{p['part']}.json").read_text()))
                   for p in summary['parts'] if (work / f"{p['part']}.json").exists()}
        summary['targets'] = targets(reports)
        summary['wall_s'] = round(time.time() - start, 1)
        write_outputs(out, work, summary)
  print(summary_markdown(summary))
  print(f'wrote {out / "gpu_check.tar.gz"}, {out / "summary.md"}, {out / "summary.json"}, '
        f'{out / "gpu_check.log"}')
  return 0 if all(p['status'] == 'ok' and not p['errors'] for p in summary['parts']) else 1


if __name__ == '__main__':
  sys.exit(main())
