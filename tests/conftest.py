"""Shared fixtures: a very small config and the LUDB dataset built once per test session."""
import os
import shutil
import tempfile

# One on-disk XLA cache for the whole session, its workers and the CLIs they start: the same
# tiny programs are then compiled once. Set before JAX is imported.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'diffusets_jax_test_xla_cache'))
# The suite's time goes to compiling many micro programs that each run for milliseconds: XLA's
# backend optimisations cost more than they save there (measured: 30 % less CPU time over
# test_autoguidance.py and test_dpm_solver.py, cold cache). Results stay within float32 rounding.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# Without optimisations most of those compiles take under JAX's default 1 s threshold for the
# on-disk cache; caching them all is what makes a second run of the suite quick.
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pytest  # noqa: E402

from configs import tiny


def cpu_devices_env(devices: int) -> dict:
  """The environment for a subprocess that sees `devices` virtual CPU devices (other XLA flags
  kept)."""
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
      f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"))


def micro_config(tfds_dir: str):
  """Smaller than configs/tiny.py, so each compile in a test takes seconds."""
  config = tiny.get_config()
  config.data.tfds_dir = str(tfds_dir)
  config.text.cache_dir = os.path.join(os.path.dirname(str(tfds_dir)), 'embedding_cache')
  config.vae.channels = (8, 8, 8)
  config.vae.groups = 4
  config.vae.batch_size = 8
  config.vae.epochs = 1
  config.unet.num_levels = 3
  config.diffusion.batch_size = 8
  config.diffusion.epochs = 1
  config.diffusion.latent_encode_batch_size = 32
  config.clip.widths = (8, 8, 16, 16)
  config.clip.text_hidden = 32
  config.clip.batch_size = 16
  config.clip.epochs = 1
  config.evaluation.batch_size = 8
  config.evaluation.sweep_rates = (40, 120)
  config.evaluation.sweep_samples = 2
  config.evaluation.grid_records = 2
  config.evaluation.two_sample_steps = 10
  config.evaluation.two_sample_folds = 2
  config.train.checkpoint_every_steps = 2
  config.train.log_every_steps = 1
  return config


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  from diffusets_jax.datasets import ludb
  path = tmp_path_factory.mktemp('tfds')
  ludb.build(path)
  return path


@pytest.fixture
def config(tfds_dir):
  return micro_config(tfds_dir)


@pytest.fixture(scope='session')
def trained_workdir(tmp_path_factory, tfds_dir, worker_id):
  """A workdir with a few steps of every stage: enough to exercise loading and sampling.

  Built once for the whole run: pytest-xdist's workers share one (tests only read it), the first
  to ask trains it under a file lock and the others wait for it."""
  from filelock import FileLock
  from diffusets_jax import config_validation
  from diffusets_jax.training import stages
  shared = tmp_path_factory.getbasetemp()
  if worker_id != 'master':
    shared = shared.parent  # the run's folder, above each worker's own
  workdir = shared / 'trained_workdir'
  with FileLock(str(shared / 'trained_workdir.lock')):
    if not workdir.exists():
      building = shared / 'trained_workdir.building'  # renamed when done: never half-trained
      shutil.rmtree(building, ignore_errors=True)
      stages.train_stages(config_validation.validate(micro_config(tfds_dir)), building, 'all')
      building.rename(workdir)
  return workdir


def guided_config(config):
  """Micro config with the options the reference lacks: condition dropout, EMA, normalised
  patient inputs."""
  from diffusets_jax import config_validation
  config.diffusion.condition_dropout = 0.5
  config.diffusion.ema_decay = 0.9
  config.unet.normalize_patient = True
  config.diffusion.epochs = 1  # 160 / 8 = 20 steps; checkpoints every 2
  return config_validation.validate(config)


@pytest.fixture(scope='session')
def guided_workdir(trained_workdir, tmp_path_factory):
  """The session's VAE and latents, with a U-Net trained 6 steps with guided_config."""
  import json
  from diffusets_jax.store import workdir as workdirs
  from diffusets_jax.training import diffusion_stage
  workdir = tmp_path_factory.mktemp('guided')
  for name in ('vae', 'latents'):
    shutil.copytree(trained_workdir / name, workdir / name)
  config = guided_config(micro_config(json.loads(
      (trained_workdir / 'config.json').read_text())['data']['tfds_dir']))
  workdirs.save_config(workdir, config)
  diffusion_stage.train_diffusion(config, workdir, max_steps=6)
  return workdir
