"""What the U-Net predicts (`diffusion.prediction`): the noise, as the reference ('eps'), or the
velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans & Ho 2022, 'v').

With z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, a v-prediction gives the noise as
eps = sqrt(1 - abar_t) z_t + sqrt(abar_t) v, so every sampler, written for a noise prediction,
serves either through `to_eps`. Classifier-free guidance is the same in both: the map from v to eps
is affine with the same coefficients for the conditional and unconditional outputs.

Why v: at high noise an eps-model's clean estimate (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
divides its error by a small sqrt(abar_t); a v-model predicts about -x0 there, where the beats
are laid out. Its squared error is the noise error over abar_t.
"""
import jax.numpy as jnp

from diffusets_jax.diffusion.schedule import Schedule

PREDICTIONS = ('eps', 'v')


def check_prediction(prediction: str) -> str:
  if prediction not in PREDICTIONS:
    raise ValueError(f"diffusion.prediction must be one of {PREDICTIONS} ('eps': the noise, as "
                     f"the reference; 'v': the velocity), got {prediction!r}")
  return prediction


def _abar(schedule: Schedule, t, ndim: int):
  """abar_t shaped to broadcast over (batch, ...); t a scalar or (batch,)."""
  abar = schedule.alphas_cumprod[t]
  return abar.reshape(jnp.shape(abar) + (1,) * (ndim - jnp.ndim(abar)))


def training_target(schedule: Schedule, prediction: str, z0, noise, t):
  """What the U-Net is trained to output at z_t = add_noise(z0, noise, t); t (batch,)."""
  if check_prediction(prediction) == 'eps':
    return noise
  abar = _abar(schedule, t, z0.ndim)
  return jnp.sqrt(abar) * noise - jnp.sqrt(1.0 - abar) * z0


def to_eps(schedule: Schedule, prediction: str, z_t, output, t):
  """The noise prediction implied by the U-Net's `output` at (z_t, t); t a scalar or (batch,)."""
  if check_prediction(prediction) == 'eps':
    return output
  abar = _abar(schedule, t, z_t.ndim)
  return jnp.sqrt(1.0 - abar) * z_t + jnp.sqrt(abar) * output
