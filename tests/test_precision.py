"""Compute settings: config.precision (bfloat16 against float32) and config.conv_form."""
import json
import shutil

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.models import factory, layers
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import diffusion_stage

# bfloat16 keeps 8 significant bits: each rounding is off by at most u = 2**-8 relative. Over L
# layers with independent roundings the relative error grows like sqrt(L) * u; the factor 2
# allows for the norms re-amplifying it. L is the number of weight matrices the input passes.
BF16_UNIT_ROUNDOFF = 2.0 ** -8


def bf16_tolerance(params) -> float:
  layers_passed = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(params)
                      if 'kernel' in jax.tree_util.keystr(path))
  return 2 * BF16_UNIT_ROUNDOFF * np.sqrt(layers_passed)


def relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


@pytest.fixture(scope='module')
def paper():
  return diffusets.get_config()


def test_bfloat16_unet_agrees_with_float32(paper):
  # Five of the paper's seven levels: every block type (down, bottleneck, up, self- and
  # cross-attention) at the paper's widths, with a compile that fits the test suite's budget;
  # the bound below counts the layers actually passed.
  paper = paper.copy_and_resolve_references()
  paper.unet.num_levels = 5
  params = factory.init_unet(paper, jax.random.PRNGKey(0))
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 128, 4))
  t = jnp.array([0, 300, 600, 999])
  c = jax.random.normal(jax.random.PRNGKey(2), (4, factory.condition_dim(paper)))
  out = {p: jax.jit(factory.make_unet(paper, p).apply)({'params': params}, z, t, c)
         for p in ('float32', 'bfloat16')}
  assert out['bfloat16'].dtype == jnp.float32  # the sampler's state stays float32
  error = relative_error(out['bfloat16'], out['float32'])
  # Below the bound, and not zero: bfloat16 really is used.
  assert BF16_UNIT_ROUNDOFF / 16 < error < bf16_tolerance(params), error


def test_bfloat16_vae_agrees_with_float32(paper):
  # The paper's depth (which sets how roundings accumulate) at a quarter of its widths, which
  # keeps the test's compile short; the layers and their code paths are the same.
  paper = paper.copy_and_resolve_references()
  paper.vae.channels, paper.vae.groups = (32, 64, 128), 8
  params = factory.init_vae(paper, jax.random.PRNGKey(0))
  ecg = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (2, 1024, 12))
  noise = jnp.zeros((2, 128, 4))
  out = {p: jax.jit(factory.make_vae(paper, p).apply)({'params': params}, ecg, noise)
         for p in ('float32', 'bfloat16')}
  tolerance = bf16_tolerance(params)
  for name, ours, reference in zip(('reconstruction', 'mean', 'logvar'), out['bfloat16'],
                                   out['float32']):
    assert ours.dtype == jnp.float32, name
    error = relative_error(ours, reference)
    assert BF16_UNIT_ROUNDOFF / 16 < error < tolerance, (name, error, tolerance)


@pytest.mark.parametrize('model', ['unet', 'vae'])
def test_conv_forms_agree(paper, model):
  """The CPU rewrite (short convs and transposed convs as matmuls) and XLA's convolutions are the
  same function up to float32 rounding."""
  forms = {}
  paper = paper.copy_and_resolve_references()
  paper.vae.channels, paper.vae.groups = (32, 64, 128), 8  # every layer type, smaller compile
  paper.unet.num_levels = 4
  # The weights are the same in both forms: initialise once.
  params = (factory.init_unet if model == 'unet' else factory.init_vae)(paper,
                                                                       jax.random.PRNGKey(0))
  c = jax.random.normal(jax.random.PRNGKey(2), (2, factory.condition_dim(paper)))
  for form in ('matmul', 'xla'):
    paper.conv_form = form
    if model == 'unet':
      forms[form] = jax.jit(factory.make_unet(paper).apply)(
          {'params': params}, jax.random.normal(jax.random.PRNGKey(1), (2, 128, 4)),
          jnp.array([5, 900]), c)
    else:
      forms[form] = jax.jit(factory.make_vae(paper).apply)(
          {'params': params}, jax.random.normal(jax.random.PRNGKey(1), (1, 1024, 12)),
          jnp.zeros((1, 128, 4)))[0]
  assert relative_error(forms['xla'], forms['matmul']) < 1e-5


def test_conv_form_follows_the_backend():
  assert layers.conv_form_for('auto', 'cpu') == 'matmul'
  assert layers.conv_form_for('auto', 'gpu') == 'xla'
  assert layers.conv_form_for('auto', 'tpu') == 'xla'
  assert layers.conv_form_for('xla', 'cpu') == 'xla'


@pytest.mark.parametrize('field, value', [('precision', 'float16'), ('conv_form', 'cudnn')])
def test_bad_compute_settings_are_named(field, value):
  config = diffusets.get_config()
  setattr(config, field, value)
  with pytest.raises(ValueError, match=field):
    config_validation.validate(config)


def losses(workdir):
  rows = (workdir / 'diffusion' / 'metrics.jsonl').read_text().splitlines()
  return np.array([json.loads(r)['loss'] for r in rows])


def test_bfloat16_training_tracks_float32(trained_workdir, tmp_path):
  """Twelve diffusion steps from the same start in each precision: the bfloat16 losses follow
  the float32 ones step by step, and the weights and optimiser state stay float32."""
  from tests.conftest import micro_config
  base = micro_config(json.loads((trained_workdir / 'config.json').read_text())['data']['tfds_dir'])
  base.diffusion.epochs = 1  # 160 / 8 = 20 steps in the schedule
  runs = {}
  for precision in ('float32', 'bfloat16'):
    workdir = tmp_path / precision
    for name in ('vae', 'latents'):
      shutil.copytree(trained_workdir / name, workdir / name)
    config = base.copy_and_resolve_references()
    config.precision = precision
    config = config_validation.validate(config)
    workdirs.save_config(workdir, config)
    diffusion_stage.train_diffusion(config, workdir, max_steps=12)
    runs[precision] = losses(workdir)
    state = workdirs.restore_state(workdir, 'diffusion', config)
    dtypes = {x.dtype for x in jax.tree_util.tree_leaves((state.params, state.opt_state))
              if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {np.dtype('float32')}, (precision, dtypes)
  f32, bf16 = runs['float32'], runs['bfloat16']
  assert len(f32) == len(bf16) == 12
  assert not np.array_equal(f32, bf16)
  np.testing.assert_allclose(bf16, f32, rtol=0.05)
