"""Every benchmark script runs, at micro size, and records no failed configuration: a change
that breaks one fails here, not on a scarce GPU. Figures are not checked (timing is the
scripts' job, not the tests')."""
import json
import subprocess
import tarfile
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args, timeout: int = 600) -> subprocess.CompletedProcess:
  result = subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def rows_of(report: dict) -> list[dict]:
  return [row for key in ('sampling', 'training', 'timings', 'rows', 'results', 'heart_rate')
          for row in report.get(key, []) if isinstance(row, dict)]


def check_report(path: Path, expected_rows: int) -> dict:
  report = json.loads(path.read_text())
  rows = rows_of(report)
  assert len(rows) >= expected_rows, rows
  failed = [row for row in rows if 'error' in row or 'skipped' in row]
  assert not failed, failed
  return report


def test_side_by_side_exports_a_trained_workdir(trained_workdir, tmp_path):
  out = tmp_path / 'side_by_side.json'
  run('benchmarks/pytorch_reference/side_by_side.py', '--workdir', trained_workdir, '--batch', 1,
      '--precision', 'float32', '--torch_modes', 'eager', '--train_batch', '--repeats', 1,
      '--out', out)
  report = check_report(out, expected_rows=4)
  assert report['float32_outputs_agree'] and report['agreement']


def test_sampler_seconds_of_a_trained_workdir(trained_workdir, tmp_path):
  out = tmp_path / 'sampler_seconds.json'
  run('benchmarks/sampler_seconds.py', '--model', trained_workdir, '--samplers', 'ddim:3:0',
      'dpmpp:3', '--num', 2, '--repeats', 1, '--out', out)
  report = check_report(out, expected_rows=2)
  assert [(row['sampler'], row['steps']) for row in report['results']] == [('ddim', 3),
                                                                           ('dpmpp', 3)]


def test_sampling_loop(tmp_path):
  out = tmp_path / 'sampling.json'
  run('benchmarks/sampling.py', '--size', 'micro', '--batch', 1, '--steps', 2, '--repeats', 1,
      '--out', out)
  check_report(out, expected_rows=1)


def test_evaluation_metrics(tfds_dir, tmp_path):
  out = tmp_path / 'evaluation.json'
  run('benchmarks/evaluation.py', '--size', 'micro', '--num', 20, '--hr_batch', 10,
      '--repeats', 1, '--tfds_dir', tfds_dir, '--out', out)
  check_report(out, expected_rows=1)


def test_text_encoder(tmp_path):
  out = tmp_path / 'text_encoder.json'
  run('benchmarks/text_encoder.py', '--batch', 64, '--repeats', 1, '--out', out)
  check_report(out, expected_rows=1)


def test_dataset_build(tmp_path):
  out = tmp_path / 'dataset_build.json'
  run('benchmarks/dataset_build.py', '--records', 20, '--workers', 1, '--out', out)
  assert check_report(out, expected_rows=1)['results'][0]['records'] == 20


@pytest.mark.parametrize('part', ['sampling', 'loops', 'side_by_side', 'training'])
def test_gpu_check_smoke_runs_every_part(tmp_path, part):
  # The one-command GPU run, at micro size on this CPU, one part per test so the suite's
  # workers share them; each part's report lands in the archive and the summary.
  out = tmp_path / 'out'
  run('benchmarks/gpu_check.py', '--smoke', '--parts', part, '--out', out)
  summary = json.loads((out / 'summary.json').read_text())
  assert [(p['part'], p['status'], p['errors']) for p in summary['parts']] == [(part, 'ok', [])]
  assert summary['versions']['jax'] and len(summary['targets']) == 8
  with tarfile.open(out / 'gpu_check.tar.gz') as archive:
    assert f'{part}.json' in archive.getnames() and 'summary.md' in archive.getnames()
    report = json.load(archive.extractfile(f'{part}.json'))
  assert (out / 'gpu_check.log').read_text().count('===') == 1
  if part == 'loops':  # the PyTorch loops computed what ours did, from the same noise
    compared = [r for r in report['rows'] if 'relative_error' in r]
    assert {r['sampler'] for r in compared} == {'ddim-50', 'ddpm-1000'}
    assert report['float32_outputs_agree'], compared
  if part == 'sampling':
    assert {r['sampler'] for r in report['sampling']} == {'ddim-50', 'ddpm-1000'}
