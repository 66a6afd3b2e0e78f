"""The stages of a training run in order, as train.py runs them: `vae` (then the latents),
`latents`, `diffusion`, `clip`, or `all`."""
from pathlib import Path

from diffusets_jax.conditioning import openai_encoder
from diffusets_jax.store import loading
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training.clip_stage import train_clip
from diffusets_jax.training.diffusion_stage import train_diffusion
from diffusets_jax.training.latents_stage import encode_latents
from diffusets_jax.training.vae_stage import train_vae


STAGES = ('vae', 'latents', 'diffusion', 'clip', 'all')


def train_stages(config, workdir, stage: str = 'all') -> Path:
  """Runs `stage` (one of STAGES; 'all' is vae, latents, diffusion, then clip) in workdir;
  returns the workdir. With train.init_from set, 'all' encodes the latents with the VAE of the
  model it names instead of training one (with vae.train_encoder False it fine-tunes that VAE's
  decoder first; the encoder, and so the latents, stay the same)."""
  workdir = Path(workdir)
  if stage not in STAGES:
    raise ValueError(f'stage must be one of {STAGES}, got {stage!r}')
  if config.text.encoder == 'openai' and stage != 'diffusion':
    openai_encoder.api_key()  # fail now, not after the VAE has trained for hours
  from_pretrained = bool(config.train.init_from)
  tunes_decoder = not config.vae.train_encoder  # validation: only with train.init_from
  if from_pretrained and stage == 'vae' and not tunes_decoder:
    raise ValueError(f"train.init_from={config.train.init_from!r} takes the VAE of "
                     f"{loading.init_source_name(config)}: there is no vae stage to run; use "
                     f"--stage latents (or all) to encode the latents with it, or set "
                     f"vae.train_encoder=False to fine-tune its decoder")
  workdir.mkdir(parents=True, exist_ok=True)
  workdirs.save_config(workdir, config)
  if stage == 'latents' or (stage == 'all' and from_pretrained and not tunes_decoder):
    encode_latents(config, workdir)
  elif stage in ('vae', 'all'):
    state = train_vae(config, workdir)
    encode_latents(config, workdir, state.params)
  if stage in ('diffusion', 'all'):
    train_diffusion(config, workdir)
  if stage in ('clip', 'all'):
    train_clip(config, workdir)
  return workdir
