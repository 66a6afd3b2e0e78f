"""Python API: load a trained workdir and generate ECGs from reports and patient information.

  from diffusets_jax.generate import Generator
  gen = Generator.from_workdir('runs/demo')
  ecgs = gen.generate(['Sinus bradycardia', 'Left axis deviation'], age=60, sex='F',
                      heart_rate=55, num=4, sampler='ddim', steps=50, seed=0)
  ecgs.shape  # (4, 1024, 12), mV, standard lead order, 102.4 Hz
"""
import functools
import json
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp
from tqdm import tqdm

from diffusets_jax.conditioning import patient, prompts, text_encoders
from diffusets_jax.diffusion import samplers
from diffusets_jax.models import factory
from diffusets_jax.training import checkpoints, trainer


class Generator:
  """A trained VAE decoder and U-Net with the text encoder they were trained with.

  `conditioning` is the trained model's record (trainer.conditioning_record): its text encoder
  and prompt template, and the values that stand in for an unknown age or sex.

  Batches are split over `devices` (default: every local device), so a host with 8 accelerators
  samples 8 batches' worth at once; the ECGs do not depend on how many devices there are.
  """

  def __init__(self, config, vae_params, unet_params, conditioning: dict, text_encoder=None,
               time_tables=None, precision: str | None = None, devices=None):
    """time_tables: the U-Net's 'time_tables' collection of a converted checkpoint (its own
    frozen tables); None: the recomputed ones. precision: 'float32' or 'bfloat16' compute
    (None: the config's). devices: the devices to sample on (None: jax.local_devices())."""
    trainer.check_conditioning(conditioning, config, 'the trained U-Net')
    self.unet_variables = {} if time_tables is None else {'time_tables': time_tables}
    self.config = config
    self.conditioning = conditioning
    self.vae = factory.make_vae(config, precision)
    self.unet = factory.make_unet(config, precision)
    self.devices = list(devices or jax.local_devices())
    self.mesh = jax.sharding.Mesh(np.array(self.devices), ('batch',))
    self.vae_params = vae_params
    self.unet_params = unet_params
    self._placed_params = None
    self.schedule = trainer.schedule_from_config(config)
    if text_encoder is None:
      text_encoder = text_encoders.make_text_encoder(config.text)
    trained = conditioning['text']
    offered = dict(encoder=text_encoder.name, model=text_encoder.model, dim=text_encoder.dim)
    if offered != {k: trained[k] for k in offered}:
      raise ValueError(
          f'this model was trained on {trainer.describe_text(trained)} embeddings; the text '
          f'encoder given is {trainer.describe_text(offered)}. Embeddings of another encoder '
          f'mean nothing to it: use {trained["encoder"]} ({trained["model"]}).')
    self.text_encoder = text_encoder

  @classmethod
  def from_workdir(cls, workdir, text_encoder=None, **settings) -> 'Generator':
    """Loads a trained workdir. text_encoder: optional TextEncoder instance to embed prompts
    with (e.g. an OpenAIEncoder with its own base_url); it must be the one trained with.
    settings: `precision` and `devices` (see __init__)."""
    config = checkpoints.load_config(workdir)
    record_path = trainer.conditioning_path(workdir)
    if not record_path.exists():
      raise FileNotFoundError(f'{record_path} not found: {workdir} has no trained diffusion '
                              f'stage (run train.py --stage diffusion)')
    conditioning = json.loads(record_path.read_text())
    unet_state = checkpoints.restore_state(workdir, 'diffusion',
                                           trainer.abstract_state(config, 'diffusion'))
    return cls(config,
               trainer.workdir_vae_params(config, workdir),
               sampling_params(unet_state, config.sampling.use_ema), conditioning, text_encoder,
               reference_time_tables(workdir, unet_state.params), **settings)

  @classmethod
  def pretrained(cls, text_encoder=None, **settings) -> 'Generator':
    """The model shipped inside the package (configs/pretrained.py, then
    configs/pretrained_finetune.py, trained on the bundled PTB-XL and LUDB ECGs;
    docs/pretrained.md). Needs no training and no download.
    settings: `precision` and `devices` (see __init__)."""
    from diffusets_jax import pretrained
    config, vae_params, unet_params, conditioning = pretrained.load()
    return cls(config, vae_params, unet_params, conditioning, text_encoder, **settings)

  def prompt(self, reports) -> str:
    """One report (str) or several in order -> the prompt; empty reports are rejected there."""
    reports = [reports] if isinstance(reports, str) else list(reports)
    return prompts.build_prompt(reports, self.config.text.template)

  def condition(self, reports, age: float | None, sex: str | None, heart_rate: float,
                num: int) -> np.ndarray:
    """Validated condition vectors (num, d_text + 3) for one set of conditions. An unknown
    age or sex (None) is filled as in training (see conditioning/patient.py)."""
    patient.validate_patient(age, sex, heart_rate)
    return np.repeat(self.conditions([reports], [age], [sex], [heart_rate]), num, axis=0)

  def conditions(self, reports, ages, sexes, heart_rates) -> np.ndarray:
    """Condition vectors (n, d_text + 3) for n records, each with its own reports (a list in
    order), age (years, NaN or None: unknown), sex ('M', 'F', other: unknown) and heart rate
    (bpm). Each distinct prompt is embedded once."""
    if not (len(reports) == len(ages) == len(sexes) == len(heart_rates)):
      raise ValueError(f'{len(reports)} reports, {len(ages)} ages, {len(sexes)} sexes and '
                       f'{len(heart_rates)} heart rates: one of each per record')
    ages = np.array([np.nan if a is None else a for a in ages], np.float64)
    for age, heart_rate in zip(ages, heart_rates):
      patient.validate_patient(None if np.isnan(age) else age, None, heart_rate)
    reports = [[r] if isinstance(r, str) else list(r) for r in reports]
    distinct, prompt_index = trainer.prompt_table(self.config.text.template, reports)
    text = self.text_encoder.encode(distinct)[prompt_index]
    filled = patient.fill_ages(ages, self.filled_age(None) if np.isnan(ages).any() else 0.0)
    return patient.condition_vector(text, patient.sex_codes(sexes), filled, heart_rates)

  def generate_from_conditions(self, cond, sampler: str | None = None, steps: int | None = None,
                               seed: int = 0, batch_size: int = 64,
                               progress: str | None = None,
                               guidance_scale: float | None = None,
                               guidance_min_step: int | None = None,
                               ddim_eta: float | None = None) -> np.ndarray:
    """ECGs (n, 1024, 12) mV for condition vectors (n, d_text + 3), generated `batch_size` at a
    time (the last batch padded, so one shape compiles once), each batch split over the
    devices; batch_size is rounded up to a multiple of their number. Batch b uses the key
    fold_in(PRNGKey(seed), b): the result depends on seed and batch_size only.
    guidance_scale, guidance_min_step, ddim_eta: as in `generate`."""
    batch_size = -(-batch_size // len(self.devices)) * len(self.devices)
    sampler, steps = self.sampler_settings(sampler, steps)
    ddim_eta = self.ddim_eta(ddim_eta, sampler)
    guidance_scale = self.guidance(guidance_scale)
    guidance_min_step = self.guidance_min_step(guidance_min_step)
    cond = np.asarray(cond, np.float32)
    out = []
    starts = range(0, len(cond), batch_size)
    for batch, start in enumerate(tqdm(starts, desc=progress, unit='batch', disable=not progress,
                                       leave=False)):
      chunk = cond[start:start + batch_size]
      padded = np.zeros((batch_size, cond.shape[1]), np.float32)
      padded[:len(chunk)] = chunk
      ecg, _ = self._sample(self.params(), padded, batch_size, sampler, steps,
                            guidance_scale != 1.0, guidance_scale, guidance_min_step,
                            jax.random.fold_in(jax.random.PRNGKey(seed), batch),
                            self.batch_sharding(batch_size), ddim_eta)
      out.append(np.asarray(ecg)[:len(chunk)])
    return np.concatenate(out)

  def sampler_settings(self, sampler, steps) -> tuple[str, int]:
    """Validated (sampler, steps); steps is 0 for ddpm (it always runs every step)."""
    sampler = sampler or self.config.sampling.sampler
    if sampler not in ('ddpm', 'ddim'):
      raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if sampler == 'ddpm':
      return sampler, 0
    steps = steps or self.config.sampling.ddim_steps
    samplers.ddim_timesteps(self.schedule.num_timesteps, steps)  # validates steps
    return sampler, steps

  def params(self):
    """(VAE params, U-Net variables): what the jitted sampler takes as arguments, replicated on
    every device the generator samples on."""
    if self._placed_params is None:
      params = self.vae_params, {'params': self.unet_params, **self.unet_variables}
      replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
      self._placed_params = jax.device_put(params, replicated)
    return self._placed_params

  def batch_sharding(self, num: int):
    """How a batch of `num` is laid out: split over the devices along the batch axis, or on the
    first device alone when there is one device or num is not a multiple of their number."""
    if len(self.devices) > 1 and num % len(self.devices) == 0:
      return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec('batch'))
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

  def ddim_eta(self, eta: float | None, sampler: str) -> float:
    """Validated DDIM eta for `sampler` (None: the config's sampling.ddim_eta): 0 deterministic,
    1 the DDPM posterior's noise on every step, above 1 more (see samplers.ddim_step). The
    ddpm sampler has its own noise, so it gets 0, and an eta > 0 asked for with it is an error."""
    if sampler == 'ddpm':
      if eta:
        raise ValueError(f'ddim_eta applies to the ddim sampler only (the ddpm sampler adds its '
                         f'own noise); got ddim_eta {eta} with sampler ddpm')
      return 0.0
    return samplers.check_ddim_eta(self.config.sampling.ddim_eta if eta is None else eta)

  def guidance(self, guidance_scale: float | None) -> float:
    """Validated classifier-free guidance scale (None: the config's sampling.guidance_scale).
    1 is the conditional model alone; above 1 needs a model trained with condition dropout."""
    scale = float(self.config.sampling.guidance_scale if guidance_scale is None
                  else guidance_scale)
    if not np.isfinite(scale) or scale < 0:
      raise ValueError(f'guidance scale must be a finite number >= 0, got {scale}')
    if scale != 1.0 and not self.config.diffusion.condition_dropout > 0:
      raise ValueError(f'guidance scale {scale:g} needs a null condition, but this model was '
                       f'trained without condition dropout (diffusion.condition_dropout = 0); '
                       f'use guidance scale 1')
    return scale

  def guidance_min_step(self, min_step: int | None) -> int:
    """Validated first guided step: guidance on the steps t >= it only, the conditional
    prediction alone below (None: the config's sampling.guidance_min_step; 0: every step)."""
    return samplers.check_guidance_min_step(
        self.config.sampling.guidance_min_step if min_step is None else min_step,
        self.schedule.num_timesteps)

  def filled_age(self, age: float | None) -> float:
    """`age`, or for None the value this model recorded for an unknown age."""
    if age is not None:
      return age
    if self.conditioning['missing_age'] is None:
      raise ValueError('age is required: this model (converted from the reference) has no '
                       'recorded value for an unknown age')
    return self.conditioning['missing_age']

  @functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6, 8, 10, 11))
  def _sample(self, params, cond, num, sampler, steps, guide, guidance_scale, guidance_min_step,
              rng, sharding, ddim_eta=0.0):
    # `guide` is static: at scale 1 the unguided program runs (exactly the conditional model,
    # at half the cost); otherwise the scale is a traced constant of one compiled program.
    # guidance_min_step and ddim_eta are static (Python branches in the samplers): one program
    # per value.
    # `sharding` lays the batch out over the devices: every per-example tensor is constrained
    # to it and XLA partitions the loop, so each device runs its share of the batch.
    vae_params, unet_variables = params
    split = lambda x: jax.lax.with_sharding_constraint(x, sharding)
    cond = split(jnp.asarray(cond, jnp.float32))
    predict = lambda z, t, c: self.unet.apply(unet_variables, z, t, c)
    if guide:
      predict = samplers.guided(
          lambda z, t, c, drop: self.unet.apply(unet_variables, z, t, c, drop), guidance_scale,
          guidance_min_step)
    eps_fn = lambda z, t, c: split(predict(split(z), t, c))
    decode_fn = lambda z: split(self.vae.apply({'params': vae_params}, split(z),
                                               method=self.vae.decode))
    shape = (num,) + factory.latent_shape(self.config)
    clip = self.config.sampling.clip
    if sampler == 'ddpm':
      return samplers.ddpm_sample(eps_fn, decode_fn, self.schedule, cond, shape, rng, clip)
    return samplers.ddim_sample(eps_fn, decode_fn, self.schedule, cond, shape, rng, steps, clip,
                                ddim_eta)

  def generate(self, reports, age: float | None, sex: str | None, heart_rate: float, num: int = 1,
               sampler: str | None = None, steps: int | None = None, seed: int = 0,
               guidance_scale: float | None = None,
               guidance_min_step: int | None = None,
               ddim_eta: float | None = None) -> np.ndarray:
    """ECGs (num, 1024, 12) in mV, standard lead order, 102.4 Hz.

    reports: one report or several in order of importance; age in years (0-120) or None
    (unknown); sex 'M', 'F' or None (unknown); heart_rate in bpm (20-300); sampler 'ddpm'
    (1000 ancestral steps, the reference) or 'ddim' (`steps` steps); both run as one jitted
    scan including the VAE decode. guidance_scale: classifier-free guidance (None: the
    config's; 1: none). guidance_min_step: guide only the steps t >= it (None: the config's; 0:
    every step). ddim_eta: the ddim sampler's fresh noise per step, 0 deterministic, 1 the DDPM
    posterior's, above 1 more (None: the config's sampling.ddim_eta).
    """
    if num < 1:
      raise ValueError(f'num must be at least 1, got {num}')
    sampler, steps = self.sampler_settings(sampler, steps)
    ddim_eta = self.ddim_eta(ddim_eta, sampler)
    guidance_scale = self.guidance(guidance_scale)
    guidance_min_step = self.guidance_min_step(guidance_min_step)
    cond = self.condition(reports, age, sex, heart_rate, num)
    ecg, _ = self._sample(self.params(), cond, num, sampler, steps,
                          guidance_scale != 1.0, guidance_scale, guidance_min_step,
                          jax.random.PRNGKey(seed),
                          self.batch_sharding(num), ddim_eta)
    return np.asarray(ecg)

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other


def sampling_params(unet_state, use_ema: bool = True):
  """The U-Net weights to sample with: the EMA where the state keeps one and use_ema is set."""
  ema = getattr(unet_state, 'ema_params', None)
  return ema if use_ema and ema is not None else unet_state.params


def reference_time_tables(workdir, unet_params):
  """The 'time_tables' collection of a workdir converted from the reference (its checkpoint's
  own tables), or None for a model trained here (recomputed tables)."""
  from diffusets_jax import convert
  from diffusets_jax.conversion import reference_checkpoints
  path = Path(workdir) / 'diffusion' / convert.TIME_TABLES_FILE
  if not path.exists():
    return None
  with np.load(path) as tables:
    return reference_checkpoints.time_tables_tree(dict(tables), unet_params)
