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
    assert {r['sampler'] for r in compared} == {'ddim-50', 'ddpm-100'}  # micro: 100 steps
    assert report['float32_outputs_agree'], compared
  if part == 'sampling':
    assert {r['sampler'] for r in report['sampling']} == {'ddim-50', 'ddpm-100'}


def test_gpu_training_needs_no_data_pipeline_and_its_weights_assemble(trained_workdir, tmp_path):
  # The GPU machine has no tensorflow-datasets, array_record, wfdb or MiniLM package: with them
  # hidden, the run trains a fresh, larger U-Net on the carried latents, and what it returns
  # becomes a model folder with that U-Net and the VAE its config names.
  import os
  import numpy as np
  from flax import traverse_util
  from safetensors.numpy import load_file
  from diffusets_jax.store import exported, loading
  source = exported.export(loading.open_model(trained_workdir), tmp_path / 'source')
  (tmp_path / 'gpu_config.py').write_text(f'''
import json
from diffusets_jax import config_schema
def get_config():
  config = config_schema.with_defaults(json.loads(open({str(source / 'config.json')!r}).read()))
  config.train.init_from = {str(source)!r}
  config.train.init_unet = False
  config.unet.num_levels = 2   # another size than the source's 3: a fresh U-Net
  return config
''')
  out = tmp_path / 'returned'
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / 'tests' / 'gpu_machine_imports'),
                                                     str(ROOT)]))
  arguments = ['--config', tmp_path / 'gpu_config.py', '--latents', trained_workdir / 'latents',
               '--minutes', 1, '--max_steps', 6, '--out', out, '--workdir', tmp_path / 'work']
  result = subprocess.run([sys.executable, 'benchmarks/gpu_training.py', *map(str, arguments)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  run_record = json.loads((out / 'run.json').read_text())
  # 160 latents in batches of 8: 20 steps an epoch, so 6 steps round up to one whole epoch.
  assert (run_record['steps'], run_record['epochs'], run_record['unet_step']) == (20, 1, 20)
  assert run_record['heldout'] and run_record['compile_s'] > 0
  assert run_record['config']['unet']['num_levels'] == 2
  shard = load_file(str(out / 'unet-00001-of-00001.safetensors'))

  run('benchmarks/gpu_training.py', '--assemble', out, '--out', tmp_path / 'model')
  model = loading.open_model(tmp_path / 'model')
  unet = traverse_util.flatten_dict(model.unet_params, sep='/')
  assert set(unet) == {name[len('unet/'):] for name in shard}
  assert all(np.array_equal(unet[name[len('unet/'):]], value) for name, value in shard.items())
  assert model.config.unet.num_levels == 2
  vae = traverse_util.flatten_dict(loading.open_model(source).vae_params, sep='/')
  assert all(np.array_equal(value, vae[name]) for name, value in
             traverse_util.flatten_dict(model.vae_params, sep='/').items())


def test_gpu_training_shards_stay_under_the_return_limit():
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  import numpy as np
  from gpu_training import shard_names, shard_tensors
  tensors = {f't{i}': np.zeros(i * 10, np.float32) for i in range(1, 8)}   # 40-280 bytes
  shards = shard_tensors(tensors, limit=400)
  assert [sorted(s) for s in shards] == [['t1', 't2', 't3', 't4'], ['t5'], ['t6'], ['t7']]
  assert all(sum(t.nbytes for t in s.values()) <= 400 for s in shards)
  assert shard_names(2) == ['unet-00001-of-00002.safetensors', 'unet-00002-of-00002.safetensors']
