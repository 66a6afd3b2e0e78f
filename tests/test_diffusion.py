"""Schedule and sampler steps against the reference formulas on known numbers."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from diffusets_jax.diffusion import samplers
from diffusets_jax.diffusion.schedule import add_noise, linear_schedule


def test_linear_schedule_values():
  s = linear_schedule()
  betas = np.linspace(0.00085, 0.012, 1000)
  np.testing.assert_allclose(s.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(s.alphas_cumprod[0], 1 - 0.00085, rtol=1e-7)
  np.testing.assert_allclose(s.alphas_cumprod[999], np.prod(1 - betas), rtol=1e-4)
  assert 0.0 < float(s.alphas_cumprod[999]) < 0.01


def test_add_noise():
  s = linear_schedule()
  z0, noise = jnp.full((2, 3, 1), 0.5), jnp.full((2, 3, 1), -1.0)
  t = jnp.array([0, 999])
  abar = np.asarray(s.alphas_cumprod)[[0, 999]]
  expected = np.sqrt(abar) * 0.5 - np.sqrt(1 - abar)
  np.testing.assert_allclose(add_noise(s, z0, noise, t)[:, 0, 0], expected, rtol=1e-5)


@pytest.mark.parametrize('t', [500, 1, 0])
def test_one_ddpm_step_matches_the_reference_formulas(t):
  s = linear_schedule()
  betas = np.linspace(0.00085, 0.012, 1000)
  abar = np.cumprod(1 - betas)
  z_t = np.array([0.3, -0.7, 2.5])
  eps = np.array([0.1, 0.2, -0.4])
  noise = np.array([1.0, -2.0, 0.5])
  x0 = np.clip((z_t - np.sqrt(1 - abar[t]) * eps) / np.sqrt(abar[t]), -1, 1)
  abar_prev = abar[t - 1] if t > 0 else 1.0
  mean = (np.sqrt(abar_prev) * betas[t] * x0
          + np.sqrt(1 - betas[t]) * (1 - abar_prev) * z_t) / (1 - abar[t])
  var = max(betas[t] * (1 - abar_prev) / (1 - abar[t]), 1e-20)
  expected = mean + (np.sqrt(var) * noise if t > 0 else 0.0)
  got = samplers.ddpm_step(s, jnp.asarray(z_t, jnp.float32), jnp.asarray(eps, jnp.float32),
                           jnp.int32(t), jnp.asarray(noise, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-6)  # float32 vs float64
  if t == 500:
    assert abs(x0[2]) == 1.0  # this example exercises the clipping


def test_ddim_timesteps_and_validation():
  np.testing.assert_array_equal(samplers.ddim_timesteps(1000, 4), [750, 500, 250, 0])
  with pytest.raises(ValueError, match='DDIM steps'):
    samplers.ddim_timesteps(1000, 0)


def exact_predictor(s, target):
  """eps_fn giving the exact noise of z_t for a fixed clean latent `target`."""
  def oracle(z_t, t, cond):
    abar = s.alphas_cumprod[t].reshape(-1, 1, 1)
    return (z_t - jnp.sqrt(abar) * target) / jnp.sqrt(1 - abar)
  return oracle


def test_samplers_recover_a_known_latent_with_an_oracle_predictor():
  # With eps_hat = the exact noise for a fixed target x0 (|x0| < 1), both samplers end at x0.
  s = linear_schedule()
  target = jnp.linspace(-0.5, 0.5, 8).reshape(1, 8, 1)
  oracle = exact_predictor(s, target)

  for run in (lambda: samplers.ddim_sample(oracle, lambda z: z * 2, s, None, (1, 8, 1),
                                           jax.random.PRNGKey(0), 20),
              lambda: samplers.ddpm_sample(oracle, lambda z: z * 2, s, None, (1, 8, 1),
                                           jax.random.PRNGKey(0))):
    decoded, z0 = jax.jit(run)()
    np.testing.assert_allclose(z0, target, atol=1e-3)
    np.testing.assert_allclose(decoded, 2 * z0)


def test_ddpm_sample_is_the_step_loop_and_denoise_ends_it():
  # ddpm_sample = ddpm_step for t = T-1 .. 0 with the keys of split(split(rng)[1], T), in order;
  # ddpm_denoise from a step t0 runs the same steps t0 .. 0 (the end of that chain).
  s = linear_schedule(num_timesteps=12)
  cond = jnp.array([[0.3], [-0.2]])
  eps_fn = lambda z, t, c: 0.5 * z + c[:, None, :] + 0.01 * t[:, None, None]
  shape, rng = (2, 4, 1), jax.random.PRNGKey(3)
  _, z0 = samplers.ddpm_sample(eps_fn, lambda z: z, s, cond, shape, rng, clip=2.0)

  init_rng, step_rng = jax.random.split(rng)
  keys = jax.random.split(step_rng, 12)
  z = jax.random.normal(init_rng, shape)
  states = {}
  for i, t in enumerate(range(11, -1, -1)):
    states[t] = z
    z = samplers.ddpm_step(s, z, eps_fn(z, jnp.full((2,), t), cond), t,
                           jax.random.normal(keys[i], shape), clip=2.0)
  np.testing.assert_allclose(z0, z, rtol=1e-5, atol=1e-6)

  end = samplers.ddpm_denoise(eps_fn, s, cond, states[4], 4, jax.random.PRNGKey(7), clip=2.0)
  z = states[4]
  for i, t in enumerate(range(4, -1, -1)):
    z = samplers.ddpm_step(s, z, eps_fn(z, jnp.full((2,), t), cond), t,
                           jax.random.normal(jax.random.split(jax.random.PRNGKey(7), 5)[i], shape),
                           clip=2.0)
  np.testing.assert_allclose(end, z, rtol=1e-5, atol=1e-6)
  # From step 0: one step, without noise.
  last = samplers.ddpm_denoise(eps_fn, s, cond, states[0], 0, jax.random.PRNGKey(7), clip=2.0)
  np.testing.assert_allclose(
      last, samplers.ddpm_step(s, states[0], eps_fn(states[0], jnp.zeros(2, int), cond), 0,
                               jnp.zeros(shape), clip=2.0), rtol=1e-6)
