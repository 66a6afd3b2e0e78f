"""Samplers: each is one `lax.scan` over the denoising steps, followed by the VAE decode, meant to
be jitted whole (see `make_sampler`).

`eps_fn(z_t, t, cond) -> eps_hat` is the noise predictor with its parameters bound.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from diffusets_jax.diffusion.schedule import Schedule


def check_guidance_min_step(min_step, num_timesteps: int, name: str = 'guidance_min_step') -> int:
  """min_step as an int, or a ValueError naming `name` unless it is in [0, num_timesteps)."""
  if not 0 <= min_step < num_timesteps or min_step != int(min_step):
    raise ValueError(f'{name} must be an integer in [0, {num_timesteps}) (the number of '
                     f'diffusion steps), got {min_step}')
  return int(min_step)


def _inside_interval(scale, t, min_step: int, ndim: int):
  """`scale` on the steps t >= min_step, 1 below, shaped per example (t is (batch,))."""
  if min_step <= 0:
    return scale
  return jnp.where(t >= min_step, scale, 1.0).reshape((-1,) + (1,) * (ndim - 1))


def _weak_where_needed(weak_eps_fn: Callable, z_t, t, cond, min_step: int, fallback):
  """weak_eps_fn's prediction where some example is on a step t >= min_step, else `fallback`
  without calling it: the steps outside autoguidance's interval cost no weak U-Net call."""
  if min_step <= 0:
    return weak_eps_fn(z_t, t, cond)
  return jax.lax.cond(jnp.any(t >= min_step), lambda: weak_eps_fn(z_t, t, cond),
                      lambda: fallback)


def guided(eps_fn_with_drop: Callable, guidance_scale, min_step: int = 0,
           weak_eps_fn: Callable | None = None, autoguidance_scale: float = 1.0,
           autoguidance_min_step: int = 0) -> Callable:
  """Classifier-free guidance as an eps_fn: eps_c + (s - 1) (eps_c - eps_u), plus, with a
  `weak_eps_fn`, autoguidance's (a - 1) (eps_c - eps_weak) (`autoguided`), a = autoguidance_scale.

  `eps_fn_with_drop(z, t, cond, drop)` is the U-Net with a null condition; the conditional and
  unconditional predictions come from one call on the doubled batch. Written with s - 1 so that
  s = 1 adds exactly zero to eps_c. `guidance_scale` may be traced (it is a scan constant).
  Steps t < min_step take no classifier-free guidance (guidance in a limited interval,
  Kynkaanniemi et al. 2024), steps t < autoguidance_min_step no autoguidance; 0 guides every
  step.
  """
  def eps_fn(z_t, t, cond):
    n = z_t.shape[0]
    drop = jnp.concatenate([jnp.zeros((n,), bool), jnp.ones((n,), bool)])
    both = eps_fn_with_drop(jnp.concatenate([z_t, z_t]), jnp.concatenate([t, t]),
                            jnp.concatenate([cond, cond]), drop)
    eps_c, eps_u = both[:n], both[n:]
    scale = _inside_interval(guidance_scale, t, min_step, z_t.ndim)
    eps = eps_c + (scale - 1.0) * (eps_c - eps_u)
    if weak_eps_fn is None:
      return eps
    auto = _inside_interval(autoguidance_scale, t, autoguidance_min_step, z_t.ndim)
    eps_weak = _weak_where_needed(weak_eps_fn, z_t, t, cond, autoguidance_min_step, eps_c)
    return eps + (auto - 1.0) * (eps_c - eps_weak)

  return eps_fn


def autoguided(eps_fn_strong: Callable, eps_fn_weak: Callable, guidance_scale,
               min_step: int = 0) -> Callable:
  """Autoguidance (Karras et al. 2024) as an eps_fn: eps + (s - 1) (eps - eps_weak), where
  `eps_fn_weak(z, t, cond)` is a degraded version of `eps_fn_strong`, both conditional. Where
  classifier-free guidance pushes away from the unconditional prediction, this pushes away from
  the errors a worse model makes more of. s = 1 adds exactly zero; steps t < min_step take the
  strong prediction alone, without a weak call (as `guided`)."""
  def eps_fn(z_t, t, cond):
    eps = eps_fn_strong(z_t, t, cond)
    eps_weak = _weak_where_needed(eps_fn_weak, z_t, t, cond, min_step, eps)
    scale = _inside_interval(guidance_scale, t, min_step, z_t.ndim)
    return eps + (scale - 1.0) * (eps - eps_weak)

  return eps_fn


def predict_x0(schedule: Schedule, z_t, eps_hat, t, clip: float = 1.0):
  """The clean latent implied by a noise prediction, clipped as the samplers clip it:
  (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) in [-clip, clip]; t a scalar int."""
  abar_t = schedule.alphas_cumprod[t]
  return jnp.clip((z_t - jnp.sqrt(1.0 - abar_t) * eps_hat) / jnp.sqrt(abar_t), -clip, clip)


def ddpm_step(schedule: Schedule, z_t, eps_hat, t, noise, clip: float = 1.0):
  """One ancestral DDPM step of the reference, z_t -> z_{t-1} (fixed-small variance).

  x0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), clipped to [-clip, clip];
  mean = [sqrt(abar_{t-1}) beta_t x0_hat + sqrt(alpha_t) (1 - abar_{t-1}) z_t] / (1 - abar_t);
  var = beta_t (1 - abar_{t-1}) / (1 - abar_t) clamped at 1e-20; no noise at t = 0; abar_{-1} = 1.
  `t` is a scalar int (the same step for the whole batch).
  """
  abar_t = schedule.alphas_cumprod[t]
  abar_prev = jnp.where(t > 0, schedule.alphas_cumprod[jnp.maximum(t - 1, 0)], 1.0)
  beta_t = schedule.betas[t]
  alpha_t = schedule.alphas[t]
  x0_hat = predict_x0(schedule, z_t, eps_hat, t, clip)
  mean = (jnp.sqrt(abar_prev) * beta_t * x0_hat
          + jnp.sqrt(alpha_t) * (1.0 - abar_prev) * z_t) / (1.0 - abar_t)
  variance = jnp.maximum(beta_t * (1.0 - abar_prev) / (1.0 - abar_t), 1e-20)
  return mean + jnp.where(t > 0, jnp.sqrt(variance), 0.0) * noise


def check_ddim_eta(eta, name: str = 'ddim_eta') -> float:
  """eta as a float, or a ValueError naming `name` unless it is a finite number >= 0."""
  if not 0.0 <= eta < float('inf'):
    raise ValueError(f'{name} must be a finite number >= 0 (0: deterministic DDIM; 1: the DDPM '
                     f'posterior\'s variance on every step), got {eta}')
  return float(eta)


def ddim_step(schedule: Schedule, z_t, eps_hat, t, t_prev, clip: float = 1.0, eta: float = 0.0,
              noise=None):
  """One DDIM step from t to t_prev (t_prev < 0 means abar = 1), Song et al. 2021 eq. 12:
  sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma noise, with
  sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
  Above 1, eta adds more noise than the posterior's, up to sigma^2 = 1 - abar_prev, where the
  step re-noises x0_hat afresh and keeps nothing of eps_hat (sigma is capped there).

  noise: the step's standard normal draw (None: none, for eta = 0, the deterministic step).
  eta = 1 over every step (t_prev = t - 1) is the DDPM ancestral step with the posterior's
  variance, the same function as `ddpm_step` wherever the x0 clip does not act: the direction
  term keeps the predicted noise, not the noise implied by the clipped x0, as in the DDIM paper.
  """
  abar_t = schedule.alphas_cumprod[t]
  abar_prev = jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 1.0)
  x0_hat = predict_x0(schedule, z_t, eps_hat, t, clip)
  variance = jnp.minimum(
      eta ** 2 * (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev), 1.0 - abar_prev)
  z_prev = (jnp.sqrt(abar_prev) * x0_hat
            + jnp.sqrt(jnp.maximum(1.0 - abar_prev - variance, 0.0)) * eps_hat)
  return z_prev if noise is None else z_prev + jnp.sqrt(variance) * noise


def ddim_timesteps(num_timesteps: int, num_steps: int) -> jnp.ndarray:
  """Evenly spaced ('leading') steps, descending: T/n * (n-1), ..., T/n, 0."""
  if not 1 <= num_steps <= num_timesteps:
    raise ValueError(f'DDIM steps must be in 1..{num_timesteps}, got {num_steps}')
  ratio = num_timesteps // num_steps
  return jnp.arange(num_steps - 1, -1, -1, dtype=jnp.int32) * ratio


def ddpm_sample(eps_fn: Callable, decode_fn: Callable, schedule: Schedule, cond, shape, rng,
                clip: float = 1.0):
  """Ancestral sampling over all T steps, t = T-1 .. 0, then decode. Returns (ecg, z0)."""
  init_rng, step_rng = jax.random.split(rng)
  z = jax.random.normal(init_rng, shape)
  z0 = ddpm_denoise(eps_fn, schedule, cond, z, schedule.num_timesteps - 1, step_rng, clip)
  return decode_fn(z0), z0


def ddpm_denoise(eps_fn: Callable, schedule: Schedule, cond, z_t, start: int, rng,
                 clip: float = 1.0, trace: Callable | None = None):
  """Ancestral steps t = start .. 0 from z_t (a latent at noise level `start`, a Python int):
  the whole sampler for start = T-1, or the end of the chain from a partly noised latent
  (experiments/denoising_diagnostics.py). Step t's noise: split(rng, start + 1)[start - t].
  trace: fn(z_t, eps_hat) -> pytree, recorded at every step; then returns (z0, the records
  stacked in step order) instead of z0."""
  timesteps = jnp.arange(start, -1, -1, dtype=jnp.int32)
  step_keys = jax.random.split(rng, start + 1)
  n = z_t.shape[0]

  def body(z, inputs):
    t, key = inputs
    eps_hat = eps_fn(z, jnp.full((n,), t), cond)
    noise = jax.random.normal(key, z.shape)
    return ddpm_step(schedule, z, eps_hat, t, noise, clip), trace and trace(z, eps_hat)

  z0, traced = jax.lax.scan(body, z_t, (timesteps, step_keys))
  return z0 if trace is None else (z0, traced)


def ddim_sample(eps_fn: Callable, decode_fn: Callable, schedule: Schedule, cond, shape, rng,
                num_steps: int = 50, clip: float = 1.0, eta: float = 0.0):
  """DDIM over `num_steps` evenly spaced steps, then decode. Returns (ecg, z0).

  eta (a Python float): 0 is deterministic; above 0 each step adds fresh noise (`ddim_step`),
  step i's from split(fold_in(rng, 1), num_steps)[i], so the start z_T is the same at every eta.
  """
  z = jax.random.normal(rng, shape)
  timesteps = ddim_timesteps(schedule.num_timesteps, num_steps)
  ratio = schedule.num_timesteps // num_steps
  step_keys = jax.random.split(jax.random.fold_in(rng, 1), num_steps)

  def body(z_t, inputs):
    t, key = inputs
    eps_hat = eps_fn(z_t, jnp.full((shape[0],), t), cond)
    noise = None if eta == 0.0 else jax.random.normal(key, shape)
    return ddim_step(schedule, z_t, eps_hat, t, t - ratio, clip, eta, noise), None

  z0, _ = jax.lax.scan(body, z, (timesteps, step_keys))
  return decode_fn(z0), z0


def dpmpp_2m_sample(eps_fn: Callable, decode_fn: Callable, schedule: Schedule, cond, shape, rng,
                    num_steps: int = 50, clip: float = 1.0):
  """DPM-Solver++(2M) (Lu et al. 2022), the deterministic second-order multistep solver of the
  diffusion ODE in data prediction, over DDIM's `num_steps` steps, then decode. Returns
  (ecg, z0). One noise prediction per step, so it serves any eps-prediction model (converted
  reference weights included); z_T is DDIM's (normal(rng)).

  With alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), lambda_t = log(alpha_t / sigma_t) and
  the clipped data prediction x0_t = (z_t - sigma_t eps) / alpha_t, a step from s to t with
  h = lambda_t - lambda_s is z_t = (sigma_t / sigma_s) z_s - alpha_t (exp(-h) - 1) D, where
  D = x0_s on the first step, and (1 + 1 / 2r) x0_s - (1 / 2r) x0_prev with r = h_prev / h
  after it. The last step, to abar = 1, is first order: it returns x0 at t = 0.
  """
  z = jax.random.normal(rng, shape)
  timesteps = ddim_timesteps(schedule.num_timesteps, num_steps)
  following = jnp.concatenate([timesteps[1:], jnp.array([-1], jnp.int32)])
  first = jnp.arange(num_steps) == 0

  def body(carry, inputs):
    z_s, x0_prev, h_prev = carry
    s, t, is_first = inputs
    eps_hat = eps_fn(z_s, jnp.full((shape[0],), s), cond)
    x0 = predict_x0(schedule, z_s, eps_hat, s, clip)
    abar_s = schedule.alphas_cumprod[s]
    abar_t = schedule.alphas_cumprod[jnp.maximum(t, 0)]
    lambda_s = 0.5 * (jnp.log(abar_s) - jnp.log1p(-abar_s))
    lambda_t = 0.5 * (jnp.log(abar_t) - jnp.log1p(-abar_t))
    h = lambda_t - lambda_s
    r = h_prev / h
    d = jnp.where(is_first, x0, (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev)
    z_t = (jnp.sqrt((1.0 - abar_t) / (1.0 - abar_s)) * z_s
           - jnp.sqrt(abar_t) * jnp.expm1(-h) * d)
    return (jnp.where(t < 0, x0, z_t), x0, h), None

  (z0, _, _), _ = jax.lax.scan(body, (z, jnp.zeros(shape), jnp.ones(())),
                               (timesteps, following, first))
  return decode_fn(z0), z0
