"""Config checks: unknown fields (typos) and impossible values fail early with a clear message."""
from pathlib import Path

import ml_collections

from diffusets_jax import config_schema
from diffusets_jax.conditioning import text_encoders
from diffusets_jax.diffusion import prediction, samplers, sampling_settings
from diffusets_jax.models import layers


def unknown_fields(config, reference, prefix: str = '') -> list[str]:
  names = []
  for key, value in config.items():
    name = f'{prefix}{key}'
    if key not in reference:
      names.append(name)
    elif isinstance(value, (dict, ml_collections.ConfigDict)) and key != 'template':
      names += unknown_fields(value, reference[key], f'{name}.')
  return names


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises ValueError naming unknown or inconsistent fields; returns the config locked."""
  unknown = unknown_fields(config, config_schema.get_config())
  if unknown:
    raise ValueError(f'unknown config field(s): {", ".join(unknown)} '
                     f'(the known fields are in diffusets_jax/config_schema.py)')
  text_encoders.resolve(config.text)
  layers.compute_dtype(config.precision)  # each raises naming its field
  layers.conv_form_for(config.conv_form, backend='cpu')
  if config.vae.latent_channels < 1:
    raise ValueError('vae.latent_channels must be positive')
  for channels in config.vae.channels:
    if channels % config.vae.groups:
      raise ValueError(f'vae.channels {tuple(config.vae.channels)} must all be divisible by '
                       f'vae.groups={config.vae.groups}')
  if not 0.0 <= config.diffusion.condition_dropout < 1.0:
    raise ValueError(f'diffusion.condition_dropout must be in [0, 1), got '
                     f'{config.diffusion.condition_dropout}')
  if not 0.0 <= config.diffusion.ema_decay < 1.0:
    raise ValueError(f'diffusion.ema_decay must be in [0, 1) (0: no EMA), got '
                     f'{config.diffusion.ema_decay}')
  if not config.diffusion.min_snr_gamma >= 0.0:  # also rejects NaN
    raise ValueError(f'diffusion.min_snr_gamma must be >= 0 (0: unweighted loss), got '
                     f'{config.diffusion.min_snr_gamma}')
  prediction.check_prediction(config.diffusion.prediction)
  if config.diffusion.stretch_copies < 0 or config.diffusion.stretch_max_factor <= 1.0:
    raise ValueError(f'diffusion.stretch_copies must be >= 0 and diffusion.stretch_max_factor '
                     f'above 1, got {config.diffusion.stretch_copies} and '
                     f'{config.diffusion.stretch_max_factor}')
  if config.diffusion.shift_copies < 0:
    raise ValueError(f'diffusion.shift_copies must be >= 0, got {config.diffusion.shift_copies}')
  if config.diffusion.fast_rate_extra_draws < 0 or not config.diffusion.fast_rate_bpm > 0:
    raise ValueError(f'diffusion.fast_rate_extra_draws must be >= 0 and diffusion.fast_rate_bpm '
                     f'positive, got {config.diffusion.fast_rate_extra_draws} and '
                     f'{config.diffusion.fast_rate_bpm}')
  if not config.vae.latent_scale > 0:
    raise ValueError(f'vae.latent_scale must be positive, got {config.vae.latent_scale}')
  if not config.sampling.clip > 0:
    raise ValueError(f'sampling.clip must be positive, got {config.sampling.clip}')
  if not 0 <= config.vae.latent_noise < 10:
    raise ValueError(f'vae.latent_noise is a share of the latent RMS in [0, 10), got '
                     f'{config.vae.latent_noise}')
  if config.evaluation.sweep_reports not in config_schema.SWEEP_REPORTS:
    raise ValueError(f'evaluation.sweep_reports must be one of {config_schema.SWEEP_REPORTS}, '
                     f'got {config.evaluation.sweep_reports!r}')
  if not config.vae.spectral_weight >= 0:
    raise ValueError(f'vae.spectral_weight must be non-negative, got {config.vae.spectral_weight}')
  if not config.vae.adversarial_weight >= 0 or config.vae.adversarial_start_step < 0:
    raise ValueError(f'vae.adversarial_weight and vae.adversarial_start_step must be '
                     f'non-negative, got {config.vae.adversarial_weight} and '
                     f'{config.vae.adversarial_start_step}')
  if not config.vae.train_encoder and not config.train.init_from:
    raise ValueError('vae.train_encoder=False fine-tunes the decoder of a trained VAE: set '
                     "train.init_from ('pretrained' or an exported folder)")
  if config.data.ptbxl_max_ecg_id < 0:
    raise ValueError(f'data.ptbxl_max_ecg_id must be >= 0 (0: every record), got '
                     f'{config.data.ptbxl_max_ecg_id}')
  if config.vae.kl_weight < 0:
    raise ValueError(f'vae.kl_weight must be non-negative, got {config.vae.kl_weight}')
  if config.sampling.guidance_scale < 0:
    raise ValueError(f'sampling.guidance_scale must be non-negative, got '
                     f'{config.sampling.guidance_scale}')
  sampling_settings.check_autoguidance(config.sampling.autoguidance_scale,
                                       config.sampling.guidance_dropout, 'sampling.')
  for field in ('guidance_min_step', 'autoguidance_min_step'):
    samplers.check_guidance_min_step(config.sampling[field], config.diffusion.num_timesteps,
                                     f'sampling.{field}')
  samplers.check_ddim_eta(config.sampling.ddim_eta, 'sampling.ddim_eta')
  if config.sampling.sampler not in sampling_settings.SAMPLERS:
    raise ValueError(f"sampling.sampler must be one of {', '.join(sampling_settings.SAMPLERS)}, "
                     f"got {config.sampling.sampler!r}")
  if config.train.heldout_every_steps < 0 or config.train.heldout_records < 1:
    raise ValueError(f'train.heldout_every_steps must be >= 0 (0: off) and train.heldout_records '
                     f'>= 1, got {config.train.heldout_every_steps} and '
                     f'{config.train.heldout_records}')
  if not 0.0 <= config.unet.dropout < 1.0:
    raise ValueError(f'unet.dropout must be in [0, 1) (0: off), got {config.unet.dropout}')
  if config.unet.heart_rate_clock < 0:
    raise ValueError(f'unet.heart_rate_clock must be >= 0 (0: off), got '
                     f'{config.unet.heart_rate_clock}')
  if (config.train.init_from not in ('', 'pretrained')
      and not (Path(config.train.init_from) / 'weights.safetensors').is_file()):
    raise ValueError(f"train.init_from must be '' (from scratch), 'pretrained' (the shipped "
                     f"model) or a folder exported by `python -m diffusets_jax.pretrained "
                     f"--export_from WORKDIR --out FOLDER`; {config.train.init_from!r} holds no "
                     f"weights.safetensors")
  config.lock()
  return config
