"""experiments/average_unets.py: the exported U-Net is the weighted mean of the two, tensor by
tensor; a model whose encoder differs is refused."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from diffusets_jax.store import exported, open_model

ROOT = Path(__file__).resolve().parents[1]


def average(base, other, weight, out):
  return subprocess.run([sys.executable, 'experiments/average_unets.py', '--base', str(base),
                         '--other', str(other), '--weight', str(weight), '--out', str(out)],
                        cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope='module')
def two_models(trained_workdir, tmp_path_factory):
  """The micro model exported, and a copy whose U-Net (and decoder) weights were moved."""
  folder = tmp_path_factory.mktemp('average')
  base = open_model(trained_workdir, use_ema=True)
  exported.export(base, folder / 'base')
  keys = iter(jax.random.split(jax.random.PRNGKey(3), 1000))

  def moved(tree):
    return jax.tree.map(lambda x: np.asarray(x) + np.asarray(jax.random.normal(next(keys), x.shape)),
                        tree)

  vae = dict(base.vae_params, decoder=moved(base.vae_params['decoder']))
  exported.export(dataclasses.replace(base, unet_params=moved(base.unet_params), vae_params=vae),
                  folder / 'other')
  return folder


def test_the_average_is_the_weighted_mean_of_the_u_nets(two_models, tmp_path):
  run = average(two_models / 'base', two_models / 'other', 0.25, tmp_path / 'mix')
  assert run.returncode == 0, run.stderr[-2000:]
  base, other, mixed = (exported.load(two_models / 'base'), exported.load(two_models / 'other'),
                        exported.load(tmp_path / 'mix'))
  flat = [traverse_util.flatten_dict(m.unet_params, sep='/') for m in (base, other, mixed)]
  assert flat[0].keys() == flat[2].keys()
  for name in flat[0]:
    np.testing.assert_allclose(flat[2][name], 0.75 * flat[0][name] + 0.25 * flat[1][name],
                               rtol=1e-6, atol=1e-6)
  assert not np.allclose(flat[2][name], flat[0][name])
  # The base model decodes: its VAE, whatever the other's decoder.
  for a, b in zip(jax.tree.leaves(mixed.vae_params), jax.tree.leaves(base.vae_params)):
    np.testing.assert_array_equal(a, b)


def test_a_model_with_another_encoder_is_refused(two_models, tmp_path):
  base = exported.load(two_models / 'base')
  encoder = jax.tree.map(lambda x: np.asarray(x) * 1.01, base.vae_params['encoder'])
  exported.export(dataclasses.replace(base, vae_params=dict(base.vae_params, encoder=encoder)),
                  tmp_path / 'other_encoder')
  run = average(two_models / 'base', tmp_path / 'other_encoder', 0.5, tmp_path / 'mix')
  assert run.returncode != 0 and 'has other latents' in run.stderr
  assert not (tmp_path / 'mix').exists()
  run = average(two_models / 'base', two_models / 'other', 1.5, tmp_path / 'mix')
  assert run.returncode != 0 and 'in [0, 1], got 1.5' in run.stderr
