"""A trained model, opened from any of its on-disk forms.

  open_model('pretrained')              the model shipped in the package
  open_model('exported/')               a folder written by export (safetensors, config, record)
  open_model('runs/demo')               a training workdir (orbax checkpoints)
  open_model(('vae_model.pth', 'unet_all.pth'))   the authors' released checkpoints

Each gives a TrainedModel: what sampling needs, parameters only (no optimiser state is read).
"""
from pathlib import Path

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from diffusets_jax import train_state
from diffusets_jax.models import factory, limb_leads
from diffusets_jax.store import exported, reference
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.store.trained_model import TrainedModel

PRETRAINED = exported.PRETRAINED


def open_model(source=PRETRAINED, use_ema: bool | None = None) -> TrainedModel:
  """The trained model at `source` (see the module docstring). use_ema: sample with the U-Net's
  EMA weights where a workdir keeps them (None: the config's sampling.use_ema)."""
  if isinstance(source, (tuple, list)):
    return reference.open_pair(*source)
  if source == PRETRAINED:
    return exported.load(exported.PRETRAINED_FOLDER, PRETRAINED)
  folder = Path(source)
  if (folder / exported.WEIGHTS).is_file():
    return exported.load(folder)
  if workdirs.config_path(folder).is_file():
    return open_workdir(folder, use_ema)
  raise FileNotFoundError(f'{folder} is not a trained diffusets-jax workdir or exported model: it '
                          f'holds neither config.json (a workdir) nor {exported.WEIGHTS}')


def open_vae(source=PRETRAINED) -> tuple[ml_collections.ConfigDict, dict]:
  """(config, VAE params) of a trained model, or of a workdir that has trained only its VAE."""
  folder = Path(source)
  if (source != PRETRAINED and workdirs.config_path(folder).is_file()
      and not (folder / exported.WEIGHTS).is_file()):
    config = workdirs.load_config(folder)
    return config, workdir_vae_params(config, folder)
  model = open_model(source)
  return model.config, model.vae_params


def open_workdir(folder, use_ema: bool | None = None) -> TrainedModel:
  config = workdirs.load_config(folder)
  conditioning = workdirs.read_conditioning(folder)
  unet = workdirs.restore_for_inference(folder, 'diffusion', config)
  use_ema = config.sampling.use_ema if use_ema is None else use_ema
  ema = unet.get('ema_params')
  weights = 'ema' if use_ema and ema is not None else 'params'
  unet_params = unet['ema_params' if weights == 'ema' else 'params']
  return TrainedModel(config, workdir_vae_params(config, folder), unet_params, conditioning,
                      reference_time_tables(folder), str(folder), weights,
                      int(unet['step']))


def reference_time_tables(folder) -> dict | None:
  """{reference name: (1000, 64)} of a workdir converted from the reference (its checkpoint's
  own frozen time tables), or None for a model trained here (recomputed tables)."""
  path = workdirs.time_tables_path(folder)
  if not path.exists():
    return None
  with np.load(path) as tables:
    return dict(tables)


def latents_differ(config, vae_params, other_config, other_vae_params) -> str:
  """How two VAEs would encode differently, '' where they encode alike: the encoder tensors that
  differ (or are missing from one), else a differing latent_scale. A U-Net trained on one's
  latents is valid for the other only where this is ''; their decoders may differ."""
  ours = traverse_util.flatten_dict(vae_params['encoder'], sep='/')
  theirs = traverse_util.flatten_dict(other_vae_params['encoder'], sep='/')
  differ = sorted(name for name in ours.keys() | theirs.keys()
                  if name not in ours or name not in theirs
                  or not np.array_equal(ours[name], theirs[name]))
  if differ:
    return f'encoder tensors {", ".join(differ[:2])}, {len(differ)} in all'
  if config.vae.latent_scale != other_config.vae.latent_scale:
    return f'latent_scale {other_config.vae.latent_scale} against {config.vae.latent_scale}'
  return ''


def init_source_name(config) -> str:
  return ('the shipped model' if config.train.init_from == PRETRAINED
          else f'the model in {config.train.init_from}')


def init_source(config) -> TrainedModel:
  """The model train.init_from names: the shipped one or a folder exported from a workdir."""
  return open_model(config.train.init_from)


def init_source_vae_params(config):
  """The VAE of the model train.init_from names, checked against the VAE `config` builds: every
  tensor present, at its shape. The reference is abstract (no initialiser runs). Where one
  derives its limb leads and the other does not, the source's last conv is laid out as `config`
  builds it (models/limb_leads.py), exactly where it unfolds and by projection where it folds."""
  source = init_source_name(config)
  source_model = init_source(config)
  given = source_model.vae_params
  if source_model.config.vae.derived_limb_leads and not config.vae.derived_limb_leads:
    given = limb_leads.unfold_from_decoder(given)
  elif config.vae.derived_limb_leads and not source_model.config.vae.derived_limb_leads:
    given = limb_leads.fold_into_decoder(given)
  expected = jax.eval_shape(lambda: factory.init_vae(config, jax.random.PRNGKey(0)))
  missing = sorted(set(traverse_util.flatten_dict(expected, sep='/'))
                   - set(traverse_util.flatten_dict(given, sep='/')))
  if missing:
    raise ValueError(f'the VAE of {source} lacks {", ".join(missing[:3])}'
                     f'{", ..." if len(missing) > 3 else ""}: this config builds another VAE')
  return train_state.warm_start(expected, given, f'the VAE of {source}')


def samples_with_init_source_vae(config, folder) -> bool:
  """A workdir fine-tuned from another model (train.init_from) with no VAE stage of its own."""
  return bool(config.train.init_from) and not (Path(folder) / 'vae').exists()


def workdir_vae_params(config, folder):
  """The VAE of a trained workdir: its own, or that of the model it was fine-tuned from
  (train.init_from, which trains no VAE)."""
  if samples_with_init_source_vae(config, folder):
    return init_source_vae_params(config)
  return workdirs.restore_for_inference(folder, 'vae', config)['params']


def open_clip(folder) -> tuple[ml_collections.ConfigDict, dict, dict]:
  """(config, {'params', 'batch_stats'}, text record) of a workdir's trained CLIP model."""
  config = workdirs.load_config(folder)
  if not workdirs.has_stage(folder, 'clip'):
    raise FileNotFoundError(
        f'{folder} has no CLIP model, which the diagnostic metrics need; train it with '
        f'python train.py --config <its config> --workdir {folder} --stage clip, or point '
        f'--clip_workdir at a workdir that has one')
  variables = workdirs.restore_for_inference(folder, 'clip', config)
  return config, variables, workdirs.read_conditioning(folder, 'clip')['text']
