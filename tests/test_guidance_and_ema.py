"""Classifier-free guidance, the U-Net's EMA weights, and the normalised patient condition."""
import json
import shutil

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from diffusets_jax import config_validation
from diffusets_jax.conditioning import patient
from diffusets_jax.diffusion import samplers
from diffusets_jax.generate import Generator
from diffusets_jax import train_state
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import diffusion_stage


def read_log(workdir):
  lines = (workdir / 'diffusion' / 'metrics.jsonl').read_text().splitlines()
  return {r['step']: r['loss'] for r in map(json.loads, lines)}


def test_killed_run_resumes_exactly_ema_included(guided_workdir, tmp_path):
  config = workdirs.load_config(guided_workdir)
  config = config_validation.validate(config)
  killed = tmp_path / 'killed'
  for name in ('vae', 'latents'):
    shutil.copytree(guided_workdir / name, killed / name)
  diffusion_stage.train_diffusion(config, killed, max_steps=4)
  assert workdirs.manager(killed, 'diffusion').latest_step() == 4
  # As if the killed run had logged step 5 and died writing step 6, before the next checkpoint.
  log = killed / 'diffusion' / 'metrics.jsonl'
  with open(log, 'a') as f:
    f.write(json.dumps({'step': 5, 'loss': 1e9}) + '\n{"step": 6, "lo')
  diffusion_stage.train_diffusion(config, killed, max_steps=6)  # restarted: resumes at step 4
  steps_logged = [json.loads(line)['step'] for line in log.read_text().splitlines()]
  assert steps_logged == [1, 2, 3, 4, 5, 6]  # each once: the killed run's extra lines dropped
  full, resumed = read_log(guided_workdir), read_log(killed)
  np.testing.assert_allclose([resumed[5], resumed[6]], [full[5], full[6]], rtol=1e-6)
  a = workdirs.restore_state(guided_workdir, 'diffusion', config)
  b = workdirs.restore_state(killed, 'diffusion', config)
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(jax.tree_util.tree_leaves(a.ema_params), jax.tree_util.tree_leaves(b.ema_params)):
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)
  # The EMA is an average, not a copy of the weights, and it has moved from the initial ones.
  init = train_state.unet_state(config, 1)[1].params
  moved = [float(np.max(np.abs(e - p))) for e, p in zip(
      jax.tree_util.tree_leaves(a.ema_params), jax.tree_util.tree_leaves(init))]
  apart = [float(np.max(np.abs(e - p))) for e, p in zip(
      jax.tree_util.tree_leaves(a.ema_params), jax.tree_util.tree_leaves(a.params))]
  assert max(moved) > 0 and max(apart) > 0


def test_null_condition_is_learned(guided_workdir):
  config = workdirs.load_config(guided_workdir)
  state = workdirs.restore_state(guided_workdir, 'diffusion', config)
  null = np.asarray(state.params['null_condition'])
  assert null.shape == (387,) and np.abs(null).max() > 0  # initialised at zero, then trained


def test_guidance_formula_is_exact_at_scale_one():
  """eps_c + (s - 1)(eps_c - eps_u): s = 1 gives eps_c bit for bit, s = 0 gives eps_u."""
  def eps_fn_with_drop(z, t, c, drop):
    return jnp.where(drop[:, None, None], -0.3 * z, z * c[:, None, :1] + t[:, None, None])

  z = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 4))
  t = jnp.array([5, 6, 7])
  c = jax.random.normal(jax.random.PRNGKey(1), (3, 9))
  conditional = z * c[:, None, :1] + t[:, None, None]
  np.testing.assert_array_equal(samplers.guided(eps_fn_with_drop, 1.0)(z, t, c), conditional)
  np.testing.assert_allclose(samplers.guided(eps_fn_with_drop, 0.0)(z, t, c), -0.3 * z,
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(samplers.guided(eps_fn_with_drop, 3.0)(z, t, c),
                             conditional + 2.0 * (conditional + 0.3 * z), rtol=1e-5)


@pytest.mark.parametrize('sampler', ['ddim', 'ddpm', 'dpmpp'])
def test_guidance_scale_one_is_the_unguided_sampler(guided_workdir, sampler):
  gen = Generator.from_workdir(guided_workdir)
  kwargs = dict(reports='Sinus rhythm', age=50, sex='F', heart_rate=70, num=2, sampler=sampler,
                steps=5, seed=3)
  unguided = gen.generate(**kwargs, guidance_scale=1.0)
  default = gen.generate(**kwargs)  # the config's default scale is 1
  np.testing.assert_array_equal(default, unguided)
  # The batched cond/uncond program run at scale 1 computes the same (up to float rounding of
  # a batch twice as large), and another scale changes the ECGs.
  cond = gen.condition('Sinus rhythm', 50, 'F', 70, 2)
  traced_one, _ = gen.sample_batch(cond, gen.settings(sampler, 5, guidance_scale=1.0),
                                   jax.random.PRNGKey(3), guided=True)
  np.testing.assert_allclose(np.asarray(traced_one), unguided, atol=1e-4)
  guided = gen.generate(**kwargs, guidance_scale=3.0)
  assert np.all(np.isfinite(guided)) and np.abs(guided - unguided).max() > 1e-4


def test_guidance_needs_a_null_condition(trained_workdir):
  gen = Generator.from_workdir(trained_workdir)  # trained without condition dropout
  with pytest.raises(ValueError, match='needs a null condition'):
    gen.generate('Sinus rhythm', 50, 'F', 70, guidance_scale=2.0)
  with pytest.raises(ValueError, match='finite number'):
    gen.settings(guidance_scale=float('nan'))


def test_ema_weights_are_used_for_sampling_by_default(guided_workdir):
  config = workdirs.load_config(guided_workdir)
  state = workdirs.restore_state(guided_workdir, 'diffusion', config)
  gen = Generator.from_workdir(guided_workdir)
  for a, b in zip(jax.tree_util.tree_leaves(gen.unet_params),
                  jax.tree_util.tree_leaves(state.ema_params)):
    np.testing.assert_array_equal(a, b)


def test_patient_normalisation_known_values():
  cond = jnp.array([[0.25, -1.0, 1.0, 70.0, 75.0], [0.0, 0.0, 0.5, 50.0, 70.0]])
  out = np.asarray(patient.normalize(cond))
  np.testing.assert_allclose(out, [[0.25, -1.0, 1.0, 1.0, 0.25], [0.0, 0.0, 0.0, 0.0, 0.0]])


def test_new_options_are_validated(config):
  config.diffusion.condition_dropout = 1.0
  with pytest.raises(ValueError, match='condition_dropout'):
    config_validation.validate(config)


@pytest.mark.parametrize('field, value', [('vae.latent_scale', 0.0), ('sampling.clip', -1.0),
                                          ('diffusion.stretch_copies', -1),
                                          ('diffusion.stretch_max_factor', 1.0),
                                          ('diffusion.shift_copies', -1),
                                          ('diffusion.fast_rate_extra_draws', -1),
                                          ('diffusion.fast_rate_bpm', 0.0),
                                          ('unet.heart_rate_clock', -1),
                                          ('train.init_from', 'runs/other')])
def test_training_options_are_validated(config, field, value):
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(ValueError, match=name):
    config_validation.validate(config)
