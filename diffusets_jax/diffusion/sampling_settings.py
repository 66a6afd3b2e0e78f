"""The settings of one sampling run, resolved from what a caller asks for and the model's config.

Every entry point (the Python API, sample.py, evaluate.py, the scripts) resolves them here, so a
setting means the same everywhere and is checked once.
"""
import dataclasses

import numpy as np

from diffusets_jax.diffusion import samplers

SAMPLERS = ('ddpm', 'ddim', 'dpmpp')


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
  sampler: str              # 'ddpm' (ancestral, every step), 'ddim' or 'dpmpp' (DPM-Solver++ 2M)
  steps: int                # ddim and dpmpp steps; 0 for ddpm, which runs every step
  ddim_eta: float           # DDIM's fresh noise per step (0 for the others)
  guidance_scale: float     # 1: the conditional model alone
  guidance_min_step: int    # guide only the steps t >= it; 0: every step
  # 0: classifier-free guidance (away from the unconditional prediction); above 0, autoguidance
  # away from the same U-Net with this share of its block activations dropped
  guidance_dropout: float

  @property
  def guided(self) -> bool:
    return self.guidance_scale != 1.0

  def as_kwargs(self) -> dict:
    """The settings as the keyword arguments of Generator.generate and its kin."""
    return dataclasses.asdict(self)

  def unet_steps(self, num_timesteps: int) -> int:
    """Denoising steps of one run (each one U-Net evaluation, a guided pair counted once)."""
    return self.steps or num_timesteps

  def describe(self) -> str:
    """A few words for titles, e.g. 'ddim eta 3, guidance 3 on t >= 400'."""
    text = self.sampler
    if self.ddim_eta:
      text += f' eta {self.ddim_eta:g}'
    text += f', guidance {self.guidance_scale:g}'
    if self.guidance_dropout and self.guided:
      text += f' against dropout {self.guidance_dropout:g}'
    if self.guidance_min_step and self.guided:
      text += f' on t >= {self.guidance_min_step}'
    return text


def check_guidance_dropout(rate, name: str = 'guidance_dropout') -> float:
  """rate as a float, or a ValueError naming `name` unless it is in [0, 1)."""
  rate = float(rate)
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'{name} must be in [0, 1) (0: classifier-free guidance; above 0: '
                     f'autoguidance against the U-Net with that share dropped), got {rate}')
  return rate


def check_guidance_scale(scale, has_null_condition: bool, guidance_dropout: float = 0.0) -> float:
  """scale as a float, or a ValueError unless it is finite, >= 0, and (above or below 1, for
  classifier-free guidance) the model has a null condition to guide with."""
  scale = float(scale)
  if not np.isfinite(scale) or scale < 0:
    raise ValueError(f'guidance scale must be a finite number >= 0, got {scale}')
  if scale != 1.0 and not has_null_condition and not guidance_dropout:
    raise ValueError(f'guidance scale {scale:g} needs a null condition, but this model was '
                     f'trained without condition dropout (diffusion.condition_dropout = 0); '
                     f'use guidance scale 1')
  return scale


def resolve(config, sampler: str | None = None, steps: int | None = None,
            ddim_eta: float | None = None, guidance_scale: float | None = None,
            guidance_min_step: int | None = None,
            guidance_dropout: float | None = None) -> SamplingSettings:
  """Validated settings; each None takes the config's sampling.* value. An eta > 0 asked for
  with the ddpm sampler is an error (it adds its own noise)."""
  s = config.sampling
  sampler = sampler or s.sampler
  if sampler not in SAMPLERS:
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
  num_timesteps = config.diffusion.num_timesteps
  if sampler != 'ddim' and ddim_eta:
    raise ValueError(f'ddim_eta applies to the ddim sampler only (ddpm adds its own noise, '
                     f'dpmpp none); got ddim_eta {ddim_eta} with sampler {sampler}')
  if sampler == 'ddpm':
    steps, ddim_eta = 0, 0.0
  else:
    steps = steps or s.ddim_steps
    samplers.ddim_timesteps(num_timesteps, steps)  # validates steps
    ddim_eta = (samplers.check_ddim_eta(s.ddim_eta if ddim_eta is None else ddim_eta)
                if sampler == 'ddim' else 0.0)
  dropout = check_guidance_dropout(
      s.guidance_dropout if guidance_dropout is None else guidance_dropout)
  scale = check_guidance_scale(s.guidance_scale if guidance_scale is None else guidance_scale,
                               config.diffusion.condition_dropout > 0, dropout)
  min_step = samplers.check_guidance_min_step(
      s.guidance_min_step if guidance_min_step is None else guidance_min_step, num_timesteps)
  return SamplingSettings(sampler, int(steps), float(ddim_eta), scale, min_step, dropout)
