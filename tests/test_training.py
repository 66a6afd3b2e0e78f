"""Training: device-count invariance, resume after a kill, config and workdir errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusets_jax import config_validation
from diffusets_jax.training import checkpoints, trainer

ROOT = Path(__file__).resolve().parents[1]


def run_two_steps(devices: int) -> dict:
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, 'tests/two_steps.py'], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_and_four_devices_give_the_same_losses():
  single, four = run_two_steps(1), run_two_steps(4)
  assert (single['devices'], four['devices']) == (1, 4)
  for stage in ('vae', 'diffusion', 'clip'):
    np.testing.assert_allclose(four[stage], single[stage], rtol=1e-4)
    assert single[stage][0] != single[stage][1]  # the second step saw the first update


def read_losses(workdir, stage):
  lines = (Path(workdir) / stage / 'metrics.jsonl').read_text().splitlines()
  return {r['step']: r['loss'] for r in map(json.loads, lines)}


def test_resumed_run_continues_with_the_same_losses(config, tmp_path):
  config.vae.epochs = 1  # 160 / 8 = 20 steps; checkpoints every 2
  config = config_validation.validate(config)
  full = tmp_path / 'full'
  trainer.train_vae(config, full, max_steps=6)
  killed = tmp_path / 'killed'
  trainer.train_vae(config, killed, max_steps=4)  # "killed" after the checkpoint at step 4
  assert checkpoints.manager(killed, 'vae').latest_step() == 4
  trainer.train_vae(config, killed, max_steps=6)  # restarted: resumes at step 4
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
  with pytest.raises(ValueError, match=r'made with text encoder minilm .* asks for hashing'):
    trainer.train_diffusion(config, trained_workdir)
