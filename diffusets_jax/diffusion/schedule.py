"""The linear beta schedule of the reference (`diffusers.DDPMScheduler`, 'linear')."""
from typing import NamedTuple

import numpy as np
import jax.numpy as jnp


class Schedule(NamedTuple):
  betas: jnp.ndarray           # (T,)
  alphas: jnp.ndarray          # (T,)
  alphas_cumprod: jnp.ndarray  # (T,) abar_t

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]


def linear_schedule(num_timesteps: int = 1000, beta_start: float = 0.00085,
                    beta_end: float = 0.012) -> Schedule:
  # Computed in float64 then cast, so abar matches diffusers' float32 values closely.
  betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
  alphas = 1.0 - betas
  abar = np.cumprod(alphas)
  return Schedule(*(jnp.asarray(a, jnp.float32) for a in (betas, alphas, abar)))


def schedule_from_config(config) -> Schedule:
  d = config.diffusion
  return linear_schedule(d.num_timesteps, d.beta_start, d.beta_end)


def add_noise(schedule: Schedule, z0, noise, t):
  """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) noise; z0, noise (batch, ...), t (batch,) int."""
  abar = schedule.alphas_cumprod[t].reshape((-1,) + (1,) * (z0.ndim - 1))
  return jnp.sqrt(abar) * z0 + jnp.sqrt(1.0 - abar) * noise
