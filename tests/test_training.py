"""Training: device-count invariance, resume after a kill, config and workdir errors."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusets_jax import config_validation
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import diffusion_stage
from diffusets_jax.training import vae_stage
from tests.conftest import cpu_devices_env

ROOT = Path(__file__).resolve().parents[1]


def run_two_steps(devices: int) -> dict:
  out = subprocess.run([sys.executable, 'tests/two_steps.py'], cwd=ROOT,
                       env=cpu_devices_env(devices),
                       capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_and_four_devices_give_the_same_losses():
  single, four = run_two_steps(1), run_two_steps(4)
  assert (single['devices'], four['devices']) == (1, 4)
  for stage in ('vae', 'diffusion', 'clip'):
    np.testing.assert_allclose(four[stage], single[stage], rtol=1e-4)
    assert single[stage][0] != single[stage][1]  # the second step saw the first update


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one_process_with_as_many_devices(tfds_dir, tmp_path):
  """2 processes x 2 CPU devices (jax.distributed, gloo collectives) against 1 process x 4:
  the same VAE losses, checkpoint steps and latents. (The run loop, sharding and checkpointing are
  shared by every stage; each stage's step is checked on 1 vs 4 devices above.)"""
  def command(workdir, *extra):
    return [sys.executable, 'tests/multihost_training.py', f'--tfds_dir={tfds_dir}',
            f'--workdir={workdir}', *extra]

  port = free_port()
  processes = [subprocess.Popen(command(tmp_path / 'multi', '--num_processes=2',
                                        f'--process_id={i}', f'--port={port}'),
                                cwd=ROOT, env=cpu_devices_env(2), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for i in range(2)]
  subprocess.run(command(tmp_path / 'single'), cwd=ROOT, env=cpu_devices_env(4), check=True,
                 capture_output=True)
  outputs = [process.communicate(timeout=600)[0] for process in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
  assert '4 devices in 2 processes' in outputs[0]  # process 0 reports the global run ...
  assert '[vae]' not in outputs[1]                 # ... and the other stays quiet
  single, multi = read_losses(tmp_path / 'single', 'vae'), read_losses(tmp_path / 'multi', 'vae')
  assert list(single) == [1, 2, 3, 4] and single.keys() == multi.keys()
  np.testing.assert_allclose([multi[k] for k in single], list(single.values()), rtol=1e-4)
  for split in ('train', 'test'):
    a = workdirs.load_latents(tmp_path / 'single', split)
    b = workdirs.load_latents(tmp_path / 'multi', split)
    np.testing.assert_allclose(b['latent'], a['latent'], rtol=1e-4, atol=5e-5)
    np.testing.assert_array_equal(b['record_id'], a['record_id'])
  # Parameters are not compared one by one: where a gradient is ~0, Adam's normalised update
  # takes the sign of float noise (the sum order differs), so such entries may move either way
  # by up to the learning rate. The latents, encoded with the final parameters, agree.
  steps_saved = workdirs.manager(tmp_path / 'multi', 'vae').all_steps()
  assert steps_saved == workdirs.manager(tmp_path / 'single', 'vae').all_steps()
  assert 4 in steps_saved


def read_losses(workdir, stage):
  lines = (Path(workdir) / stage / 'metrics.jsonl').read_text().splitlines()
  return {r['step']: r['loss'] for r in map(json.loads, lines)}


def test_resumed_run_continues_with_the_same_losses(config, tmp_path):
  config.vae.epochs = 1  # 160 / 8 = 20 steps; checkpoints every 2
  config = config_validation.validate(config)
  full = tmp_path / 'full'
  vae_stage.train_vae(config, full, max_steps=6)
  killed = tmp_path / 'killed'
  vae_stage.train_vae(config, killed, max_steps=4)  # "killed" after the checkpoint at step 4
  assert workdirs.manager(killed, 'vae').latest_step() == 4
  vae_stage.train_vae(config, killed, max_steps=6)  # restarted: resumes at step 4
  uninterrupted, resumed = read_losses(full, 'vae'), read_losses(killed, 'vae')
  np.testing.assert_allclose([resumed[5], resumed[6]], [uninterrupted[5], uninterrupted[6]],
                             rtol=1e-5)


def test_unknown_config_field_is_named(config):
  config.vae.chanels = (8, 8, 8)
  with pytest.raises(ValueError, match=r'unknown config field\(s\): vae.chanels'):
    config_validation.validate(config)


def test_unknown_config_field_on_the_command_line(tmp_path):
  out = subprocess.run([sys.executable, 'train.py', '--config', 'configs/tiny.py',
                        f'--workdir={tmp_path}', '--config.vae.nonsense=3'],
                       cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0
  assert 'nonsense' in out.stderr


def test_workdir_without_checkpoints(tmp_path):
  from diffusets_jax.generate import Generator
  with pytest.raises(FileNotFoundError, match='not a trained diffusets-jax workdir'):
    Generator.from_workdir(tmp_path)


def test_diffusion_refuses_latents_of_another_text_encoder(trained_workdir, tfds_dir):
  from tests.conftest import micro_config
  config = micro_config(tfds_dir)
  config.text.encoder = 'hashing'
  config = config_validation.validate(config)
  with pytest.raises(ValueError, match=r'made with text encoder minilm .* but hashing .* is given'):
    diffusion_stage.train_diffusion(config, trained_workdir)
