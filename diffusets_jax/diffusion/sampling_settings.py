"""The settings of one sampling run, resolved from what a caller asks for and the model's config.

Every entry point (the Python API, sample.py, evaluate.py, the scripts) resolves them here, so a
setting means the same everywhere and is checked once.
"""
import dataclasses

import numpy as np

from diffusets_jax.diffusion import samplers

SAMPLERS = ('ddpm', 'ddim', 'dpmpp')
# The fields of SamplingSettings that set the guidance (classifier-free and autoguidance).
GUIDANCE_FIELDS = ('guidance_scale', 'guidance_min_step', 'autoguidance_scale',
                   'guidance_dropout', 'autoguidance_min_step')


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
  sampler: str              # 'ddpm' (ancestral, every step), 'ddim' or 'dpmpp' (DPM-Solver++ 2M)
  steps: int                # ddim and dpmpp steps; 0 for ddpm, which runs every step
  ddim_eta: float           # DDIM's fresh noise per step (0 for the others)
  guidance_scale: float     # classifier-free guidance; 1: none
  guidance_min_step: int    # classifier-free guidance only on the steps t >= it; 0: every step
  # Autoguidance away from the same U-Net with guidance_dropout of its block activations dropped
  # (1: none), only on the steps t >= autoguidance_min_step (0: every step)
  autoguidance_scale: float
  guidance_dropout: float
  autoguidance_min_step: int = 0

  @property
  def autoguided(self) -> bool:
    return self.autoguidance_scale != 1.0

  def predictions_per_step(self) -> int:
    """U-Net predictions on a step where every guidance acts: conditional, unconditional (CFG),
    weak (autoguidance)."""
    return 1 + self.guided + self.autoguided

  @property
  def guided(self) -> bool:
    return self.guidance_scale != 1.0

  def guidance(self) -> dict:
    """The guidance fields (GUIDANCE_FIELDS) by name, as a run records them."""
    return {field: getattr(self, field) for field in GUIDANCE_FIELDS}

  def as_kwargs(self) -> dict:
    """The settings as the keyword arguments of Generator.generate and its kin."""
    return dataclasses.asdict(self)

  def unet_steps(self, num_timesteps: int) -> int:
    """Denoising steps of one run."""
    return self.steps or num_timesteps

  def timesteps(self, num_timesteps: int) -> np.ndarray:
    """The steps t at which the U-Net is evaluated, in the order the sampler takes them."""
    if self.sampler == 'ddpm':
      return np.arange(num_timesteps - 1, -1, -1)
    return np.asarray(samplers.ddim_timesteps(num_timesteps, self.steps))

  def unet_evaluations(self, num_timesteps: int) -> float:
    """U-Net evaluations of one run, a batched pair of predictions counted once (CFG's
    conditional and unconditional, or autoguidance's strong and weak); a step with all three
    counts 1.5. Autoguidance's weak model is called on the steps t >= autoguidance_min_step
    only."""
    steps = self.unet_steps(num_timesteps)
    if not (self.guided and self.autoguided):
      return float(steps)
    weak_steps = int(np.sum(self.timesteps(num_timesteps) >= self.autoguidance_min_step))
    return steps + 0.5 * weak_steps

  def describe(self) -> str:
    """A few words for titles, e.g. 'ddim eta 3, guidance 3 on t >= 400'."""
    text = self.sampler
    if self.ddim_eta:
      text += f' eta {self.ddim_eta:g}'
    text += f', guidance {self.guidance_scale:g}'
    if self.guidance_min_step and self.guided:
      text += f' on t >= {self.guidance_min_step}'
    if self.autoguided:
      text += f', autoguidance {self.autoguidance_scale:g} (dropout {self.guidance_dropout:g})'
      if self.autoguidance_min_step:
        text += f' on t >= {self.autoguidance_min_step}'
    return text


def check_autoguidance(scale, rate, prefix: str = '') -> tuple[float, float]:
  """(scale, rate) as floats, or a ValueError naming the field: the scale finite and >= 0, the
  weak model's dropout in (0, 1) where the scale is not 1."""
  scale, rate = float(scale), float(rate)
  if not np.isfinite(scale) or scale < 0:
    raise ValueError(f'{prefix}autoguidance_scale must be a finite number >= 0 (1: none), '
                     f'got {scale}')
  if not 0.0 <= rate < 1.0 or (scale != 1.0 and rate == 0.0):
    raise ValueError(f'{prefix}guidance_dropout, the share of activations the weak model of '
                     f'autoguidance drops, must be in (0, 1), got {rate}')
  return scale, rate


def check_guidance_scale(scale, has_null_condition: bool) -> float:
  """scale as a float, or a ValueError unless it is finite, >= 0, and (above or below 1) the
  model has a null condition to guide with."""
  scale = float(scale)
  if not np.isfinite(scale) or scale < 0:
    raise ValueError(f'guidance scale must be a finite number >= 0, got {scale}')
  if scale != 1.0 and not has_null_condition:
    raise ValueError(f'guidance scale {scale:g} needs a null condition, but this model was '
                     f'trained without condition dropout (diffusion.condition_dropout = 0); '
                     f'use guidance scale 1')
  return scale


def resolve(config, sampler: str | None = None, steps: int | None = None,
            ddim_eta: float | None = None, guidance_scale: float | None = None,
            guidance_min_step: int | None = None, autoguidance_scale: float | None = None,
            guidance_dropout: float | None = None,
            autoguidance_min_step: int | None = None) -> SamplingSettings:
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
  auto, dropout = check_autoguidance(
      s.autoguidance_scale if autoguidance_scale is None else autoguidance_scale,
      s.guidance_dropout if guidance_dropout is None else guidance_dropout)
  scale = check_guidance_scale(s.guidance_scale if guidance_scale is None else guidance_scale,
                               config.diffusion.condition_dropout > 0)
  min_step = samplers.check_guidance_min_step(
      s.guidance_min_step if guidance_min_step is None else guidance_min_step, num_timesteps)
  auto_min_step = samplers.check_guidance_min_step(
      s.autoguidance_min_step if autoguidance_min_step is None else autoguidance_min_step,
      num_timesteps, 'autoguidance_min_step')
  return SamplingSettings(sampler, int(steps), float(ddim_eta), scale, min_step, auto, dropout,
                          auto_min_step)


# What each guidance flag of the command-line tools does (its default is the config's value).
GUIDANCE_FLAG_HELP = dict(
    guidance_scale='Classifier-free guidance scale; 1: none (the conditional model alone).',
    guidance_min_step='Classifier-free guidance only on the denoising steps t >= this (0-999; '
    'the steps below take the conditional prediction alone; 0: every step).',
    autoguidance_scale='Autoguidance, alone or on top of --guidance_scale: each step is also '
    'pushed away from the same U-Net with --guidance_dropout of its activations dropped; 1: none.',
    guidance_dropout='Share of the block activations autoguidance\'s weak model drops.',
    autoguidance_min_step='Autoguidance only on the denoising steps t >= this (0-999); the steps '
    'below make no weak U-Net call; 0: every step.')


def define_guidance_flags(flags) -> dict:
  """The guidance flags of the command-line tools (absl), by SamplingSettings field; each
  defaults to None, the model config's sampling.* value."""
  return {field: (flags.DEFINE_integer if field.endswith('min_step') else flags.DEFINE_float)(
              field, None, f"{GUIDANCE_FLAG_HELP[field]} Default: the config's sampling.{field}.")
          for field in GUIDANCE_FIELDS}


def flag_values(guidance_flags: dict) -> dict:
  """The values of define_guidance_flags' flags, as keyword arguments of resolve()."""
  return {field: flag.value for field, flag in guidance_flags.items()}
