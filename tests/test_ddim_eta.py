"""sampling.ddim_eta: DDIM with fresh noise per step, from deterministic (0) to DDPM's (1)."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.diffusion import samplers
from diffusets_jax.diffusion.schedule import linear_schedule
from diffusets_jax.generate import Generator
from tests.test_diffusion import exact_predictor


def eps_fn(z, t, c):
  return jnp.tanh(0.7 * z) + c[:, None, :] - 0.02 * t[:, None, None]


def test_eta_one_over_every_step_is_the_ddpm_sampler():
  # Where the x0 clip does not act, DDIM at eta 1 with t_prev = t - 1 samples the DDPM
  # posterior: same mean, same variance. With the same start and the same noise per step, the
  # two chains end at the same latent.
  s = linear_schedule(num_timesteps=12)
  cond = jnp.array([[0.3], [-0.2]])
  shape, rng = (2, 4, 1), jax.random.PRNGKey(5)
  _, z0 = samplers.ddim_sample(eps_fn, lambda z: z, s, cond, shape, rng, num_steps=12,
                               clip=1e6, eta=1.0)
  keys = jax.random.split(jax.random.fold_in(rng, 1), 12)
  z = jax.random.normal(rng, shape)
  for i, t in enumerate(range(11, -1, -1)):
    z = samplers.ddpm_step(s, z, eps_fn(z, jnp.full((2,), t), cond), t,
                           jax.random.normal(keys[i], shape), clip=1e6)
  np.testing.assert_allclose(z0, z, rtol=1e-4, atol=1e-5)
  # Not a chain that ignores eta: the deterministic one ends elsewhere.
  _, deterministic = samplers.ddim_sample(eps_fn, lambda z: z, s, cond, shape, rng,
                                          num_steps=12, clip=1e6)
  assert np.abs(np.asarray(deterministic) - np.asarray(z)).max() > 1e-2


def test_step_against_the_formula_in_float64():
  s = linear_schedule()
  abar = np.asarray(s.alphas_cumprod, np.float64)
  z_t, eps, noise = (np.random.default_rng(i).normal(size=(3, 6)) for i in range(3))
  t, t_prev, eta = 600, 400, 0.6
  x0 = np.clip((z_t - np.sqrt(1 - abar[t]) * eps) / np.sqrt(abar[t]), -1, 1)
  sigma = eta * np.sqrt((1 - abar[t_prev]) / (1 - abar[t]) * (1 - abar[t] / abar[t_prev]))
  expected = (np.sqrt(abar[t_prev]) * x0 + np.sqrt(1 - abar[t_prev] - sigma ** 2) * eps
              + sigma * noise)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  got = samplers.ddim_step(s, f32(z_t), f32(eps), t, t_prev, 1.0, eta, f32(noise))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-6)
  # eta 0 adds no noise and is the deterministic step.
  deterministic = np.sqrt(abar[t_prev]) * x0 + np.sqrt(1 - abar[t_prev]) * eps
  np.testing.assert_allclose(samplers.ddim_step(s, f32(z_t), f32(eps), t, t_prev, 1.0),
                             deterministic, rtol=1e-4, atol=2e-6)
  # Above the cap (sigma^2 = 1 - abar_prev) the step re-noises x0_hat and drops eps_hat.
  capped = np.sqrt(abar[t_prev]) * x0 + np.sqrt(1 - abar[t_prev]) * noise
  np.testing.assert_allclose(samplers.ddim_step(s, f32(z_t), f32(eps), t, t_prev, 1.0, 50.0,
                                                f32(noise)), capped, rtol=1e-4, atol=2e-6)
  # The last step (to abar = 1) is noise-free at any eta.
  last = samplers.ddim_step(s, f32(z_t), f32(eps), 20, -1, 1.0, 1.0, f32(noise))
  np.testing.assert_allclose(last, np.clip((z_t - np.sqrt(1 - abar[20]) * eps)
                                           / np.sqrt(abar[20]), -1, 1), rtol=1e-4, atol=2e-6)


def test_an_exact_predictor_ends_at_its_latent_at_any_eta():
  s = linear_schedule()
  target = jnp.linspace(-0.5, 0.5, 8).reshape(1, 8, 1)
  oracle = exact_predictor(s, target)

  for eta in (0.5, 1.0):
    _, z0 = jax.jit(lambda: samplers.ddim_sample(oracle, lambda z: z, s, None, (1, 8, 1),
                                                 jax.random.PRNGKey(0), 20, eta=eta))()
    np.testing.assert_allclose(z0, target, atol=1e-3)


def test_generator_eta(trained_workdir):
  gen = Generator.from_workdir(trained_workdir)
  kwargs = dict(reports='Sinus rhythm', age=50, sex='F', heart_rate=70, num=2, sampler='ddim',
                steps=5, seed=3)
  deterministic = gen.generate(**kwargs)
  noisy = gen.generate(**kwargs, ddim_eta=1.0)
  assert noisy.shape == deterministic.shape and np.all(np.isfinite(noisy))
  assert np.abs(noisy - deterministic).max() > 1e-4
  np.testing.assert_array_equal(gen.generate(**kwargs, ddim_eta=0.0), deterministic)
  cond = gen.condition('Sinus rhythm', 50, 'F', 70, 2)
  np.testing.assert_array_equal(
      gen.generate_from_conditions(cond, 'ddim', 5, seed=3, batch_size=2, ddim_eta=1.0),
      gen.generate_from_conditions(cond, 'ddim', 5, seed=3, batch_size=2, ddim_eta=1.0))
  for bad in (-0.1, float('inf'), float('nan')):
    with pytest.raises(ValueError, match='ddim_eta must be a finite number >= 0'):
      gen.generate(**kwargs, ddim_eta=bad)
  with pytest.raises(ValueError, match='ddim_eta applies to the ddim sampler only'):
    gen.generate(**{**kwargs, 'sampler': 'ddpm'}, ddim_eta=0.5)


def test_config_validation_and_off_in_the_paper_config(config):
  config.sampling.ddim_eta = -1.0
  with pytest.raises(ValueError, match='sampling.ddim_eta'):
    config_validation.validate(config)
  assert diffusets.get_config().sampling.ddim_eta == 0.0


def test_the_shipped_sampler_renoises_its_clean_estimate_on_every_step():
  # configs/pretrained.py's claim: at its step count, its eta is at or above the cap on every
  # step but the last, so each step draws the next latent afresh around x0_hat (float64).
  from configs import pretrained
  from diffusets_jax.diffusion.schedule import schedule_from_config
  config = pretrained.get_config()
  abar = np.asarray(schedule_from_config(config).alphas_cumprod, np.float64)
  timesteps = np.asarray(samplers.ddim_timesteps(config.diffusion.num_timesteps,
                                                 config.sampling.ddim_steps))
  ratio = config.diffusion.num_timesteps // config.sampling.ddim_steps
  t = timesteps[timesteps >= ratio]
  eta_at_cap = np.sqrt((1 - abar[t]) / (1 - abar[t] / abar[t - ratio]))
  assert config.sampling.ddim_eta >= eta_at_cap.max()
  # A bound that binds: eta 2 stays below the cap on most steps.
  assert np.mean(eta_at_cap > 2.0) > 0.5
