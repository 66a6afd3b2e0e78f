"""Python API: a trained model (any form the store opens) generating ECGs from reports and
patient information.

  from diffusets_jax.generate import Generator
  gen = Generator.from_workdir('runs/demo')       # or Generator.pretrained(), Generator.open(...)
  ecgs = gen.generate(['Sinus bradycardia', 'Left axis deviation'], age=60, sex='F',
                      heart_rate=55, num=4, sampler='ddim', steps=50, seed=0)
  ecgs.shape  # (4, 1024, 12), mV, standard lead order, 102.4 Hz
"""
import dataclasses
import functools

import numpy as np
import jax
import jax.numpy as jnp
from tqdm import tqdm

from diffusets_jax import batching
from diffusets_jax.conditioning import patient, prompts, text_encoders
from diffusets_jax.conditioning.record import check_record
from diffusets_jax.conversion import reference_checkpoints
from diffusets_jax.diffusion import prediction, samplers, sampling_settings
from diffusets_jax.diffusion.sampling_settings import SamplingSettings
from diffusets_jax.diffusion.schedule import schedule_from_config
from diffusets_jax.models import factory
from diffusets_jax.store import TrainedModel, open_model


class Generator:
  """A trained VAE decoder and U-Net with the text encoder they were trained with.

  `conditioning` is the trained model's record (conditioning/record.py): its text encoder and
  prompt template, and the values that stand in for an unknown age or sex.

  Batches are split over `devices` (default: every local device), so a host with 8 accelerators
  samples 8 batches' worth at once; the ECGs do not depend on how many devices there are.
  """

  def __init__(self, model: TrainedModel, text_encoder=None, precision: str | None = None,
               devices=None):
    """text_encoder: a TextEncoder to embed prompts with (None: the one the model was trained
    with); it must be that encoder. precision: 'float32' or 'bfloat16' compute (None: the
    config's). devices: the devices to sample on (None: jax.local_devices())."""
    config = model.config
    self.model = model
    self.config = config
    self.conditioning = model.conditioning
    self.vae_params = model.vae_params
    self.unet_params = model.unet_params
    self.unet_variables = {} if model.time_tables is None else {
        'time_tables': reference_checkpoints.time_tables_tree(model.time_tables,
                                                              model.unet_params)}
    self.codec = VAECodec(config, model.vae_params, precision)
    self.vae = self.codec.vae  # one VAE module for sampling's decode and the codec
    self.encode, self.decode = self.codec.encode, self.codec.decode
    self.unet = factory.make_unet(config, precision)
    self.devices = list(devices or jax.local_devices())
    self.mesh = jax.sharding.Mesh(np.array(self.devices), (batching.AXIS,))
    self._placed_params = None
    self.schedule = schedule_from_config(config)
    if text_encoder is None:
      text_encoder = text_encoders.make_text_encoder(config.text)
    text_encoders.check_same_encoder(
        model.conditioning['text'],
        dict(encoder=text_encoder.name, model=text_encoder.model, dim=text_encoder.dim),
        'this model', f'Embeddings of another encoder mean nothing to it: use '
        f'{model.conditioning["text"]["encoder"]} ({model.conditioning["text"]["model"]}).')
    self.text_encoder = text_encoder
    check_record(model.conditioning, config, 'the trained U-Net')

  @classmethod
  def open(cls, source, text_encoder=None, **settings) -> 'Generator':
    """Any trained model the store opens (store.open_model): 'pretrained', an exported folder,
    a workdir, or a (vae .pth, unet .pth) pair. settings: `precision` and `devices`."""
    return cls(open_model(source), text_encoder, **settings)

  @classmethod
  def from_workdir(cls, workdir, text_encoder=None, **settings) -> 'Generator':
    """A trained workdir (train.py)."""
    return cls.open(workdir, text_encoder, **settings)

  @classmethod
  def pretrained(cls, text_encoder=None, **settings) -> 'Generator':
    """The model shipped inside the package (configs/pretrained.py, then
    configs/pretrained_finetune.py, trained on the bundled PTB-XL and LUDB ECGs;
    docs/pretrained.md). Needs no training and no download."""
    return cls.open('pretrained', text_encoder, **settings)

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
    text = text_encoders.embed_reports(self.text_encoder, self.config.text.template, reports)
    filled = patient.fill_ages(ages, self.filled_age(None) if np.isnan(ages).any() else 0.0)
    return patient.condition_vector(text, patient.sex_codes(sexes), filled, heart_rates)

  def settings(self, sampler: str | None = None, steps: int | None = None,
               ddim_eta: float | None = None, guidance_scale: float | None = None,
               guidance_min_step: int | None = None, autoguidance_scale: float | None = None,
               guidance_dropout: float | None = None,
               autoguidance_min_step: int | None = None) -> SamplingSettings:
    """Validated sampling settings; each None takes this model's config value (sampling.*)."""
    return sampling_settings.resolve(self.config, sampler, steps, ddim_eta, guidance_scale,
                                     guidance_min_step, autoguidance_scale, guidance_dropout,
                                     autoguidance_min_step)

  def generate_from_conditions(self, cond, sampler: str | None = None, steps: int | None = None,
                               seed: int = 0, batch_size: int = 64,
                               progress: str | None = None,
                               guidance_scale: float | None = None,
                               guidance_min_step: int | None = None,
                               ddim_eta: float | None = None,
                               autoguidance_scale: float | None = None,
                               guidance_dropout: float | None = None,
                               autoguidance_min_step: int | None = None) -> np.ndarray:
    """ECGs (n, 1024, 12) mV for condition vectors (n, d_text + 3), generated `batch_size` at a
    time (the last batch padded, so one shape compiles once), each batch split over the
    devices; batch_size is rounded up to a multiple of their number. Batch b uses the key
    fold_in(PRNGKey(seed), b): the result depends on seed and batch_size only.
    The sampling settings are as in `generate`."""
    batch_size = batching.round_to_devices(batch_size, len(self.devices))
    settings = self.settings(sampler, steps, ddim_eta, guidance_scale, guidance_min_step,
                             autoguidance_scale, guidance_dropout, autoguidance_min_step)
    cond = np.asarray(cond, np.float32)
    out = []
    for number, part in tqdm(list(batching.fixed_batches(len(cond), batch_size)), desc=progress,
                             unit='batch', disable=not progress, leave=False):
      ecg, _ = self.sample_batch(batching.pad_rows(cond[part], batch_size), settings,
                                 jax.random.fold_in(jax.random.PRNGKey(seed), number))
      out.append(np.asarray(ecg)[:part.stop - part.start])
    return np.concatenate(out)

  def generate(self, reports, age: float | None, sex: str | None, heart_rate: float, num: int = 1,
               sampler: str | None = None, steps: int | None = None, seed: int = 0,
               guidance_scale: float | None = None,
               guidance_min_step: int | None = None,
               ddim_eta: float | None = None, autoguidance_scale: float | None = None,
               guidance_dropout: float | None = None,
               autoguidance_min_step: int | None = None) -> np.ndarray:
    """ECGs (num, 1024, 12) in mV, standard lead order, 102.4 Hz.

    reports: one report or several in order of importance; age in years (0-120) or None
    (unknown); sex 'M', 'F' or None (unknown); heart_rate in bpm (20-300); sampler 'ddpm'
    (1000 ancestral steps, the reference), 'ddim' or 'dpmpp' (DPM-Solver++ 2M), the last two
    over `steps` steps; each runs as one jitted scan including the VAE decode.
    guidance_scale: classifier-free guidance (None: the config's; 1: none). guidance_min_step:
    classifier-free guidance only on the steps t >= it (None: the config's; 0: every step).
    ddim_eta: the ddim sampler's fresh noise per step, 0 deterministic, 1 the DDPM posterior's,
    above 1 more (None: the config's sampling.ddim_eta). autoguidance_scale: autoguidance, away
    from the same U-Net with guidance_dropout of its block activations dropped, alone or on top
    of classifier-free guidance (None: the config's; 1: none), on the steps
    t >= autoguidance_min_step (None: the config's; 0: every step).
    """
    if num < 1:
      raise ValueError(f'num must be at least 1, got {num}')
    settings = self.settings(sampler, steps, ddim_eta, guidance_scale, guidance_min_step,
                             autoguidance_scale, guidance_dropout, autoguidance_min_step)
    cond = self.condition(reports, age, sex, heart_rate, num)
    ecg, _ = self.sample_batch(cond, settings, jax.random.PRNGKey(seed))
    return np.asarray(ecg)

  def sample_batch(self, cond, settings: SamplingSettings, rng, guided: bool | None = None):
    """(ECGs (n, 1024, 12) mV, latents z0) of one batch of condition vectors (n, d_text + 3), as
    device arrays laid out over the devices. guided: run the batched conditional/unconditional
    program (None: where the scale is not 1; True at scale 1 computes the conditional model
    through it)."""
    guided = settings.guided if guided is None else guided
    return self._sample(self.params(), jnp.asarray(cond, jnp.float32), _static(settings), guided,
                        settings.guidance_scale, self.batch_sharding(len(cond)), rng)

  def compiled_sampler(self, num: int, settings: SamplingSettings):
    """The sampler compiled ahead of time for batches of `num`: fn(cond, rng) -> (ecg, z0). For
    benchmarks, which time the compile apart from the runs."""
    cond = jax.ShapeDtypeStruct((num, factory.condition_dim(self.config)), jnp.float32)
    compiled = self._sample.lower(
        self, self.params(), cond, _static(settings), settings.guided, settings.guidance_scale,
        self.batch_sharding(num), jax.random.PRNGKey(0)).compile()
    sample = lambda cond, rng: compiled(self.params(), jnp.asarray(cond, jnp.float32),
                                        settings.guidance_scale, rng)
    sample.compiled = compiled  # for its memory analysis
    return sample

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
      return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(batching.AXIS))
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

  def filled_age(self, age: float | None) -> float:
    """`age`, or for None the value this model recorded for an unknown age."""
    if age is not None:
      return age
    if self.conditioning['missing_age'] is None:
      raise ValueError('age is required: this model (converted from the reference) has no '
                       'recorded value for an unknown age')
    return self.conditioning['missing_age']

  def noise_predictor(self, unet_variables, guided: bool, guidance_scale, min_step: int = 0,
                      autoguidance_scale: float = 1.0, guidance_dropout: float = 0.0,
                      autoguidance_min_step: int = 0):
    """eps_fn(z_t, t, cond) -> eps_hat of the U-Net with `unet_variables` (its output turned
    into a noise prediction where it predicts v), with classifier-free guidance
    (samplers.guided) on t >= min_step where `guided`, and autoguidance (samplers.autoguided) on
    t >= autoguidance_min_step at autoguidance_scale != 1, against the same U-Net with
    guidance_dropout of its block activations dropped. guidance_scale may be traced."""
    kind = self.config.diffusion.prediction

    def eps_fn_with_drop(z, t, c, drop=None):
      output = self.unet.apply(unet_variables, z, t, c, drop)
      return prediction.to_eps(self.schedule, kind, z, output, t)

    if autoguidance_scale == 1.0:
      return samplers.guided(eps_fn_with_drop, guidance_scale, min_step) if guided else \
          eps_fn_with_drop
    weak_unet = self.unet.clone(dropout=guidance_dropout)

    def weak_eps_fn(z, t, c):
      # One mask per step, the same for every ECG: the weak model does not depend on the batch,
      # its split over devices or the seed.
      keys = jnp.broadcast_to(jax.random.fold_in(jax.random.PRNGKey(0), t[0]), (len(z), 2))
      output = weak_unet.apply(unet_variables, z, t, c, dropout_keys=keys)
      return prediction.to_eps(self.schedule, kind, z, output, t)

    if guided:
      return samplers.guided(eps_fn_with_drop, guidance_scale, min_step, weak_eps_fn,
                             autoguidance_scale, autoguidance_min_step)
    return samplers.autoguided(eps_fn_with_drop, weak_eps_fn, autoguidance_scale,
                               autoguidance_min_step)

  @functools.partial(jax.jit, static_argnums=(0, 3, 4, 6))
  def _sample(self, params, cond, settings, guided, guidance_scale, sharding, rng):
    # `settings` (from _static) and `guided` are static: unguided, the program is exactly the
    # conditional model at half the cost; guided, the scale is a traced constant of one
    # compiled program for every scale. `sharding` lays the batch out over the devices: every
    # per-example tensor is constrained to it and XLA partitions the loop, so each device runs
    # its share of the batch.
    vae_params, unet_variables = params
    split = lambda x: jax.lax.with_sharding_constraint(x, sharding)
    cond = split(cond)
    predict = self.noise_predictor(unet_variables, guided, guidance_scale,
                                   settings.guidance_min_step, settings.autoguidance_scale,
                                   settings.guidance_dropout, settings.autoguidance_min_step)
    eps_fn = lambda z, t, c: split(predict(split(z), t, c))
    decode_fn = lambda z: split(self.vae.apply({'params': vae_params}, split(z),
                                               method=self.vae.decode))
    shape = (cond.shape[0],) + factory.latent_shape(self.config)
    clip = self.config.sampling.clip
    if settings.sampler == 'ddpm':
      return samplers.ddpm_sample(eps_fn, decode_fn, self.schedule, cond, shape, rng, clip)
    if settings.sampler == 'dpmpp':
      return samplers.dpmpp_2m_sample(eps_fn, decode_fn, self.schedule, cond, shape, rng,
                                      settings.steps, clip)
    return samplers.ddim_sample(eps_fn, decode_fn, self.schedule, cond, shape, rng,
                                settings.steps, clip, settings.ddim_eta)

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other


def _static(settings: SamplingSettings) -> SamplingSettings:
  """The settings as Generator._sample's static argument: the guidance scale, a traced argument
  of its own, left out, so that one program serves every scale."""
  return dataclasses.replace(settings, guidance_scale=None)


class VAECodec:
  """A trained VAE alone: real ECGs to latents and back, in fixed-shape jitted batches."""

  def __init__(self, config, vae_params, precision: str | None = None):
    self.config = config
    self.vae = factory.make_vae(config, precision)
    self.vae_params = vae_params

  def encode(self, ecg, batch_size: int = 64) -> np.ndarray:
    """Latents (n, 128, 4) of real ECGs (n, 1024, 12) mV: the VAE posterior's mean (no latent
    noise), scaled as the diffusion model sees them."""
    return batching.map_batches(self._encode, np.asarray(ecg, np.float32), batch_size)

  def decode(self, latent, batch_size: int = 64) -> np.ndarray:
    """ECGs (n, 1024, 12) mV of latents (n, 128, 4)."""
    return batching.map_batches(self._decode, np.asarray(latent, np.float32), batch_size)

  @functools.partial(jax.jit, static_argnums=0)
  def _encode(self, ecg):
    noise = jnp.zeros(ecg.shape[:1] + factory.latent_shape(self.config))
    return self.vae.apply({'params': self.vae_params}, ecg, noise, method=self.vae.encode)[0]

  @functools.partial(jax.jit, static_argnums=0)
  def _decode(self, latent):
    return self.vae.apply({'params': self.vae_params}, latent, method=self.vae.decode)

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other
