"""DPM-Solver++(2M): against a float64 rewrite of its update, exact for an exact predictor,
one noise prediction per step, and available from the API with guidance inside."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from diffusets_jax.diffusion import samplers
from diffusets_jax.diffusion.schedule import linear_schedule
from diffusets_jax.generate import Generator
from tests.test_diffusion import exact_predictor


def reference_dpmpp_2m(eps_fn, abar: np.ndarray, z: np.ndarray, timesteps, clip: float):
  """The solver in float64 numpy, written from the paper's algorithm (data prediction, 2M)."""
  alpha, sigma = np.sqrt(abar), np.sqrt(1.0 - abar)
  lam = np.log(alpha / sigma)
  x0_prev, h_prev = None, None
  for i, s in enumerate(timesteps):
    x0 = np.clip((z - sigma[s] * eps_fn(z, s)) / alpha[s], -clip, clip)
    if i + 1 == len(timesteps):
      return x0  # the last step, to abar = 1, is first order
    t = timesteps[i + 1]
    h = lam[t] - lam[s]
    d = x0 if x0_prev is None else (1 + 1 / (2 * h_prev / h)) * x0 - x0_prev / (2 * h_prev / h)
    z = sigma[t] / sigma[s] * z - alpha[t] * (np.exp(-h) - 1) * d
    x0_prev, h_prev = x0, h
  return z


def test_matches_the_float64_algorithm():
  s = linear_schedule()
  calls = []

  def eps_fn(z, t, cond):  # a smooth, z-dependent predictor
    calls.append(1)
    return 0.6 * z + 0.1 * jnp.sin(3 * z) + 0.001 * t[:, None, None]

  rng = jax.random.PRNGKey(2)
  _, z0 = samplers.dpmpp_2m_sample(eps_fn, lambda z: z, s, None, (2, 16, 4), rng, 10, clip=1.0)
  abar = np.cumprod(1 - np.linspace(0.00085, 0.012, 1000, dtype=np.float64))
  start = np.asarray(jax.random.normal(rng, (2, 16, 4)), np.float64)
  expected = reference_dpmpp_2m(
      lambda z, t: 0.6 * z + 0.1 * np.sin(3 * z) + 0.001 * t, abar, start,
      [int(t) for t in samplers.ddim_timesteps(1000, 10)], 1.0)
  np.testing.assert_allclose(z0, expected, rtol=1e-4, atol=1e-5)
  assert len(calls) == 1  # traced once: the scan's body, one prediction per step


def test_an_exact_predictor_ends_at_its_latent():
  s = linear_schedule()
  target = jnp.linspace(-0.5, 0.5, 8).reshape(1, 8, 1)
  oracle = exact_predictor(s, target)

  for steps in (5, 20):
    decoded, z0 = jax.jit(lambda: samplers.dpmpp_2m_sample(
        oracle, lambda z: 2 * z, s, None, (1, 8, 1), jax.random.PRNGKey(0), steps))()
    np.testing.assert_allclose(z0, target, atol=1e-4)
    np.testing.assert_allclose(decoded, 2 * z0)


def test_from_the_api_with_guidance_and_settings(guided_workdir):
  gen = Generator.from_workdir(guided_workdir)
  kwargs = dict(reports='Sinus rhythm', age=50, sex='F', heart_rate=70, num=2,
                sampler='dpmpp', steps=5, seed=3)
  unguided = gen.generate(**kwargs, guidance_scale=1.0)
  assert unguided.shape == (2, 1024, 12) and np.all(np.isfinite(unguided))
  again = gen.generate(**kwargs, guidance_scale=1.0)
  np.testing.assert_array_equal(again, unguided)  # deterministic for a seed
  settings = gen.settings('dpmpp', 5, guidance_scale=1.0)
  assert settings.unet_steps(1000) == 5 and settings.ddim_eta == 0.0
  with pytest.raises(ValueError, match='ddim_eta applies to the ddim sampler only'):
    gen.settings('dpmpp', 5, ddim_eta=1.0)
