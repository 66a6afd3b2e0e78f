"""Autoguidance against the U-Net's own dropout (`sampling.guidance_dropout`)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusets_jax import config_validation
from diffusets_jax.diffusion import samplers
from diffusets_jax.generate import Generator


def test_autoguided_is_the_formula_on_exact_predictors():
  z = np.random.default_rng(0).standard_normal((3, 16, 4))
  t = jnp.array([5, 6, 7])
  strong = lambda z, t, c: 0.7 * z + t[:, None, None]
  weak = lambda z, t, c: -0.2 * z
  exact = lambda s: (0.7 * z + np.array([5., 6., 7.])[:, None, None]) * s - (s - 1) * (-0.2 * z)
  for scale in (0.0, 1.0, 3.0):
    np.testing.assert_allclose(samplers.autoguided(strong, weak, scale)(jnp.asarray(z), t, None),
                               exact(scale), rtol=1e-5, atol=1e-5)
  # Scale 1 adds exactly zero; below min_step the strong prediction alone.
  np.testing.assert_array_equal(samplers.autoguided(strong, weak, 1.0)(jnp.asarray(z), t, None),
                                strong(jnp.asarray(z), t, None))
  partial = samplers.autoguided(strong, weak, 3.0, min_step=6)(jnp.asarray(z), t, None)
  np.testing.assert_allclose(partial[0], strong(jnp.asarray(z), t, None)[0], rtol=1e-6)
  np.testing.assert_allclose(partial[1:], exact(3.0)[1:], rtol=1e-5, atol=1e-5)


def test_the_weak_model_is_the_u_net_with_a_fixed_mask_per_step(trained_workdir):
  """Needs no null condition (the session's model has none); the weak prediction differs from
  the strong one, is the same for an ECG alone as in a batch, and changes with the step."""
  gen = Generator.from_workdir(trained_workdir)
  variables = {'params': gen.unet_params, **gen.unet_variables}
  z = jax.random.normal(jax.random.PRNGKey(0), (3, 128, 4))
  cond = jnp.asarray(gen.condition('Sinus rhythm', 50, 'F', 70, 3))
  t = jnp.full((3,), 500)
  # Jitted: one compile each instead of the U-Net's ops compiled one by one.
  strong = jax.jit(gen.noise_predictor(variables, False, 1.0))
  auto = jax.jit(gen.noise_predictor(variables, False, 1.0, autoguidance_scale=2.0,
                                     guidance_dropout=0.5))
  eps, guided = strong(z, t, cond), auto(z, t, cond)
  assert np.abs(np.asarray(guided - eps)).max() > 1e-3
  np.testing.assert_allclose(auto(z[1:2], t[:1], cond[1:2]), guided[1:2], rtol=1e-5, atol=1e-6)
  weak_at = lambda step: 2 * eps - auto(z, jnp.full((3,), step), cond)  # eps_weak at scale 2
  assert np.abs(np.asarray(weak_at(500) - weak_at(499))).max() > 1e-3


@pytest.mark.parametrize('sampler', ['ddim', 'ddpm', 'dpmpp'])
def test_scale_one_is_the_unguided_sampler_and_another_scale_is_not(trained_workdir, sampler):
  gen = Generator.from_workdir(trained_workdir)
  kwargs = dict(reports='Sinus rhythm', age=50, sex='F', heart_rate=70, num=2, sampler=sampler,
                steps=5, seed=3, guidance_dropout=0.3)
  unguided = gen.generate(**kwargs)  # the config's autoguidance scale is 1
  # The autoguided program at scale 1 (the formula traced with the weak model) computes exactly
  # the unguided ECGs.
  cond = gen.condition('Sinus rhythm', 50, 'F', 70, 2)
  variables = {'params': gen.unet_params, **gen.unet_variables}
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 128, 4))
  t = jnp.full((2,), 400)
  weak = lambda z, t, c: z * 0.0 + 5.0
  one = samplers.autoguided(gen.noise_predictor(variables, False, 1.0), weak, 1.0)
  np.testing.assert_array_equal(one(z, t, jnp.asarray(cond)),
                                gen.noise_predictor(variables, False, 1.0)(z, t, jnp.asarray(cond)))
  guided = gen.generate(**kwargs, autoguidance_scale=3.0)
  assert np.all(np.isfinite(guided)) and np.abs(guided - unguided).max() > 1e-4


def test_autoguidance_settings_are_checked_where_they_are_set(config, trained_workdir):
  config.sampling.guidance_dropout = 1.0
  with pytest.raises(ValueError, match='sampling.guidance_dropout, the share'):
    config_validation.validate(config)
  gen = Generator.from_workdir(trained_workdir)
  with pytest.raises(ValueError, match='guidance_dropout, the share'):
    gen.settings(autoguidance_scale=2.0, guidance_dropout=0.0)
  with pytest.raises(ValueError, match='autoguidance_scale must be'):
    gen.settings(autoguidance_scale=float('nan'))
  # Classifier-free guidance still needs the null condition this model lacks; autoguidance not.
  with pytest.raises(ValueError, match='needs a null condition'):
    gen.settings(guidance_scale=2.0, autoguidance_scale=2.0)
  settings = gen.settings(autoguidance_scale=2.0, guidance_dropout=0.2)
  assert settings.describe().endswith('autoguidance 2 (dropout 0.2)')
  assert settings.unet_evaluations(1000) == 1000  # a strong/weak pair counts once


def test_guidance_and_autoguidance_together_are_the_sum_of_both_terms(guided_workdir):
  """CFG and autoguidance in one step: eps_c + (s - 1)(eps_c - eps_u) + (a - 1)(eps_c - eps_w),
  each term checked against the predictor alone; 1.5 evaluations per step."""
  gen = Generator.from_workdir(guided_workdir)
  variables = {'params': gen.unet_params, **gen.unet_variables}
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 128, 4))
  t = jnp.full((2,), 300)
  cond = jnp.asarray(gen.condition('Sinus rhythm', 50, 'F', 70, 2))
  cfg = gen.noise_predictor(variables, True, 2.0)(z, t, cond)
  auto = gen.noise_predictor(variables, False, 1.0, autoguidance_scale=3.0,
                             guidance_dropout=0.4)(z, t, cond)
  eps_c = gen.noise_predictor(variables, False, 1.0)(z, t, cond)
  both = gen.noise_predictor(variables, True, 2.0, autoguidance_scale=3.0,
                             guidance_dropout=0.4)(z, t, cond)
  np.testing.assert_allclose(both, cfg + auto - eps_c, rtol=1e-4, atol=1e-4)
  assert np.abs(np.asarray(both - cfg)).max() > 1e-3
  settings = gen.settings('ddim', 50, guidance_scale=2.0, autoguidance_scale=3.0)
  assert settings.predictions_per_step() == 3 and settings.unet_evaluations(1000) == 75


def test_autoguidance_keeps_to_its_own_interval_and_skips_the_weak_call_outside_it():
  """CFG on every step, autoguidance on t >= 6 only: below, exactly CFG and no weak call (a weak
  model returning NaN leaves the result finite); above, both terms."""
  z = jnp.asarray(np.random.default_rng(1).standard_normal((3, 16, 4)), jnp.float32)
  cond, t = jnp.zeros((3, 2)), jnp.array([5, 6, 7])
  with_drop = lambda z, t, c, drop: jnp.where(drop[:, None, None], 0.5 * z, 0.7 * z + 1.0)
  weak = lambda z, t, c: -0.2 * z
  eps_c, eps_u, eps_w = 0.7 * z + 1.0, 0.5 * z, -0.2 * z
  cfg = eps_c + 1.5 * (eps_c - eps_u)
  both = samplers.guided(with_drop, 2.5, 0, weak, 3.0, autoguidance_min_step=6)(z, t, cond)
  np.testing.assert_allclose(both[0], cfg[0], rtol=1e-6)
  np.testing.assert_allclose(both[1:], (cfg + 2.0 * (eps_c - eps_w))[1:], rtol=1e-5, atol=1e-5)
  nan_weak = lambda z, t, c: jnp.full_like(z, jnp.nan)
  below = jnp.array([5, 5, 5])
  for eps_fn in (samplers.guided(with_drop, 2.5, 0, nan_weak, 3.0, autoguidance_min_step=6),
                 samplers.autoguided(lambda z, t, c: with_drop(z, t, c, jnp.zeros(3, bool)),
                                     nan_weak, 3.0, min_step=6)):
    assert np.all(np.isfinite(jax.jit(eps_fn)(z, below, cond)))
    assert np.all(np.isnan(jax.jit(eps_fn)(z, t, cond)[1:]))  # the weak model is used above


def test_the_evaluation_count_has_the_weak_call_on_autoguided_steps_only(guided_workdir):
  gen = Generator.from_workdir(guided_workdir)
  settings = gen.settings('ddim', 50, guidance_scale=2.5, autoguidance_scale=3.0,
                          autoguidance_min_step=150)
  # DDIM's 50 steps are t = 980, 960, ..., 0; 42 of them (160 to 980) are autoguided.
  assert settings.unet_evaluations(1000) == 50 + 0.5 * 42
  assert settings.describe() == ('ddim, guidance 2.5, autoguidance 3 (dropout 0.3) '
                                 'on t >= 150')
  assert gen.settings('ddpm', guidance_scale=2.0, autoguidance_scale=3.0,
                      autoguidance_min_step=150).unet_evaluations(1000) == 1000 + 0.5 * 850
  # Alone, a strong/weak pair or the strong prediction: one evaluation a step either way.
  assert gen.settings('ddim', 50, guidance_scale=1.0, autoguidance_scale=3.0,
                      autoguidance_min_step=150).unet_evaluations(1000) == 50
  with pytest.raises(ValueError, match=r'autoguidance_min_step must be an integer in \[0, 1000\)'):
    gen.settings(autoguidance_scale=3.0, autoguidance_min_step=1000)


def test_autoguidance_min_step_is_checked_in_the_config(config):
  config.sampling.autoguidance_min_step = -1
  with pytest.raises(ValueError, match='sampling.autoguidance_min_step must be an integer'):
    config_validation.validate(config)
