"""The authors' released checkpoints (vae_model.pth, unet_all.pth): read them as a TrainedModel,
write them as a workdir, and write any trained model back in their layout.

`.pth` files are read with `torch.load(weights_only=True)` (PyTorch needed for this only; files
that need arbitrary code to unpickle are refused), `.safetensors` without PyTorch. Names, layouts
and lead order: conversion/reference_checkpoints.py.
"""
import pickle
from collections import OrderedDict
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from safetensors.numpy import load_file, save_file

from diffusets_jax import config_schema, config_validation, train_state
from diffusets_jax.conditioning.record import conditioning_record
from diffusets_jax.conversion import reference_checkpoints as ref
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.store.files import staged_folder
from diffusets_jax.store.trained_model import TrainedModel

FILE_STEMS = ('vae_model', 'unet_all')


def import_torch(what: str):
  """PyTorch, an optional dependency needed to read or write .pth files only."""
  try:
    import torch
  except ModuleNotFoundError:
    raise ModuleNotFoundError(f'{what} needs PyTorch: pip install torch (the CPU build is '
                              f'enough), or use .safetensors files') from None
  return torch


def read_state_dict(path) -> dict:
  """A checkpoint file -> {name: float32 ndarray}, nested one level for {'encoder', 'decoder'}."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path} not found')
  if path.suffix == '.safetensors':
    flat = load_file(str(path))
    parts = {name.split('.', 1)[0] for name in flat}
    if parts == {'encoder', 'decoder'}:
      return {part: {n.split('.', 1)[1]: t for n, t in flat.items() if n.startswith(part + '.')}
              for part in parts}
    return flat
  torch = import_torch(f'reading {path.name}')
  try:
    loaded = torch.load(str(path), map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as error:
    raise ValueError(f'refused to load {path}: it needs arbitrary code to unpickle, which '
                     f'could run anything. Only plain state dicts of tensors are read '
                     f'({str(error).splitlines()[0][:200]})') from None

  def to_numpy(value, where):
    if isinstance(value, torch.Tensor):
      return value.detach().cpu().numpy()
    if isinstance(value, dict):
      return {str(k): to_numpy(v, f'{where}.{k}') for k, v in value.items()}
    raise ValueError(f'{path}: {where or "the file"} holds a {type(value).__name__}, not a '
                     f'state dict of tensors')
  return to_numpy(loaded, '')


def text_settings(text_dim: int, encoder: str | None, model: str | None) -> tuple[str, str]:
  if encoder:
    return encoder, model or ''
  if text_dim == 1536:
    return 'openai', model or 'text-embedding-ada-002'
  raise ValueError(f'the U-Net takes {text_dim}-d text embeddings, which no default encoder '
                   f'gives (1536-d is ada-002); name the encoder that made them with '
                   f'--text_encoder and --text_model')


def open_pair(vae_path, unet_path, text_encoder: str | None = None,
              text_model: str | None = None) -> TrainedModel:
  """The reference checkpoints as a model of the paper config (text width from the U-Net; the
  reference prompt template, its sentences joined without a space as the authors' code)."""
  vae_state_dict, unet_state_dict = read_state_dict(vae_path), read_state_dict(unet_path)
  text_dim = ref.text_dim_from_unet(unet_state_dict)
  config = config_schema.reference_config()
  config.text.encoder, config.text.model = text_settings(text_dim, text_encoder, text_model)
  config.text.dim = text_dim
  config.text.template.separator = ''
  config = config_validation.validate(config)
  vae_target = train_state.abstract_state(config, 'vae').params
  unet_target = train_state.abstract_state(config, 'diffusion').params
  unet_params = ref.unet_from_reference(unet_state_dict, unet_target)
  tables = {name: unet_state_dict[name] for name in ref.time_table_names(unet_target)}
  return TrainedModel(config, ref.vae_from_reference(vae_state_dict, vae_target), unet_params,
                      conditioning_record(config, missing_age=None), tables,
                      source=f'{vae_path} + {unet_path}')


def import_reference(vae_path, unet_path, out, text_encoder=None, text_model=None) -> Path:
  """Writes a workdir at `out` (which must not exist) from the reference checkpoints: it samples
  and fine-tunes like a trained one."""
  out = Path(out)
  if out.exists():
    raise FileExistsError(f'{out} exists; choose a new --out directory')
  model = open_pair(vae_path, unet_path, text_encoder, text_model)
  config = model.config
  print(f'text embedding width {config.text.dim}: {config.text.encoder} ({config.text.model})')
  with staged_folder(out) as staging:
    for stage, params in (('vae', model.vae_params), ('diffusion', model.unet_params)):
      target = train_state.abstract_state(config, stage)
      # A fresh optimizer state (AdamW moments at zero): fine-tuning starts from step 0.
      state = target.replace(step=0, params=params, opt_state=target.tx.init(params))
      mngr = workdirs.manager(staging, stage)
      mngr.save(0, args=ocp.args.StandardSave(state))
      mngr.wait_until_finished()
    workdirs.save_config(staging, config)
    workdirs.write_conditioning(staging, 'diffusion', model.conditioning)
    np.savez(workdirs.time_tables_path(staging), **model.time_tables)
  return out


def export_reference(model: TrainedModel, out, file_format: str = 'pth') -> list[Path]:
  """Writes vae_model.<fmt> and unet_all.<fmt> in the reference layout: the model's VAE (a
  vae.latent_scale other than 0.18215 folded into its weights) and the U-Net weights it samples
  with, options the reference lacks folded in (normalised patient inputs) or left out (the null
  condition), so that the reference code computes what this model does at guidance 1."""
  config, out = model.config, Path(out)
  if config.diffusion.prediction != 'eps':
    raise ValueError(f"this model's U-Net predicts {config.diffusion.prediction!r} "
                     f"(diffusion.prediction); the reference's predicts the noise ('eps'), so "
                     f"its code would sample wrongly from these weights")
  unet_params = ref.reference_equivalent_unet(jax.device_get(model.unet_params),
                                              config.unet.normalize_patient)
  vae_params = ref.reference_equivalent_vae(jax.device_get(model.vae_params),
                                            config.vae.latent_scale,
                                            config.vae.derived_limb_leads)
  files = {'vae_model': ref.vae_to_reference(vae_params),
           'unet_all': ref.unet_to_reference(unet_params, model.time_tables)}
  torch = import_torch('writing .pth files') if file_format == 'pth' else None
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for stem, state in files.items():
    path = out / f'{stem}.{file_format}'
    tmp = path.with_name(f'.{path.name}.tmp')
    if file_format == 'pth':
      def to_torch(value):
        if isinstance(value, dict):
          return OrderedDict((k, to_torch(v)) for k, v in value.items())
        return torch.from_numpy(np.array(value, np.float32))  # a writable copy
      torch.save(to_torch(state), tmp)
    else:
      flat = state if stem == 'unet_all' else {
          f'{part}.{n}': t for part, sd in state.items() for n, t in sd.items()}
      save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, str(tmp))
    tmp.replace(path)
    written.append(path)
  return written
