"""sampling.guidance_min_step: classifier-free guidance on the noisier steps only."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.diffusion import samplers
from diffusets_jax.generate import Generator


def eps_fn_with_drop(z, t, c, drop):
  return jnp.where(drop[:, None, None], -0.3 * z, z * c[:, None, :1] + t[:, None, None])


def test_steps_below_the_interval_take_the_conditional_prediction():
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 4))
  t = jnp.array([5, 199, 200, 900])
  c = jax.random.normal(jax.random.PRNGKey(1), (4, 9))
  conditional = z * c[:, None, :1] + t[:, None, None]
  full = conditional + 2.0 * (conditional + 0.3 * z)
  out = np.asarray(samplers.guided(eps_fn_with_drop, 3.0, min_step=200)(z, t, c))
  np.testing.assert_array_equal(out[:2], conditional[:2])  # bit for bit: s - 1 = 0
  np.testing.assert_allclose(out[2:], full[2:], rtol=1e-5)
  # 0 guides every step, exactly as without the option.
  np.testing.assert_array_equal(samplers.guided(eps_fn_with_drop, 3.0, min_step=0)(z, t, c),
                                samplers.guided(eps_fn_with_drop, 3.0)(z, t, c))


def test_interval_changes_the_samples_and_each_value_compiles_its_own(guided_workdir):
  kwargs = dict(reports='Sinus rhythm', age=50, sex='F', heart_rate=70, num=2, sampler='ddim',
                steps=5, seed=3, guidance_scale=3.0)
  gen = Generator.from_workdir(guided_workdir)
  every = gen.generate(**kwargs)
  # DDIM 5 steps: t = 800, 600 guided; 400, 200, 0 not.
  limited = gen.generate(**kwargs, guidance_min_step=500)
  unguided = gen.generate(**{**kwargs, 'guidance_scale': 1.0})
  assert np.all(np.isfinite(limited))
  assert np.abs(limited - every).max() > 1e-4 and np.abs(limited - unguided).max() > 1e-4
  # The same generator, asked again, reuses neither program for the other value.
  np.testing.assert_array_equal(gen.generate(**kwargs, guidance_min_step=0), every)
  fresh = Generator.from_workdir(guided_workdir)
  np.testing.assert_array_equal(fresh.generate(**kwargs, guidance_min_step=500), limited)
  # generate_from_conditions (evaluate.py's path) takes it too.
  cond = gen.condition('Sinus rhythm', 50, 'F', 70, 2)
  batched = [gen.generate_from_conditions(cond, 'ddim', 5, seed=3, batch_size=2,
                                          guidance_scale=3.0, guidance_min_step=m)
             for m in (None, 0, 500)]
  np.testing.assert_array_equal(batched[0], batched[1])
  assert np.abs(batched[2] - batched[0]).max() > 1e-4


def test_guidance_min_step_is_validated(config, guided_workdir):
  config.sampling.guidance_min_step = config.diffusion.num_timesteps
  with pytest.raises(ValueError, match='sampling.guidance_min_step'):
    config_validation.validate(config)
  gen = Generator.from_workdir(guided_workdir)
  for bad in (-1, gen.schedule.num_timesteps, 2.5):
    with pytest.raises(ValueError, match='guidance_min_step must be an integer'):
      gen.generate('Sinus rhythm', 50, 'F', 70, guidance_scale=3.0, guidance_min_step=bad)


def test_off_in_the_paper_config():
  assert diffusets.get_config().sampling.guidance_min_step == 0
