"""An exported model: one folder of safetensors weights, config and conditioning record. The
model shipped in the package (diffusets_jax/pretrained/) is one.

  weights.safetensors  VAE (encoder and decoder) and the U-Net's sampling weights, float32, with
                       '/'-joined Flax parameter paths prefixed 'vae/' and 'unet/'
  config.json          the training config as run
  conditioning.json    the text encoder, prompt template and missing-value fills it was trained with
  manifest.json        every tensor's shape, the weights file's SHA-256 and size, and provenance
Safetensors holds raw arrays only: loading runs no code.
"""
import json
from pathlib import Path

import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from diffusets_jax import pretrained
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.store.files import sha256, write_atomic
from diffusets_jax.store.trained_model import TrainedModel

PRETRAINED = 'pretrained'
PRETRAINED_FOLDER = pretrained.FOLDER
WEIGHTS = 'weights.safetensors'
FILES = (WEIGHTS, 'config.json', 'conditioning.json', 'manifest.json')
MAX_BYTES = 30 * 2 ** 20  # what a package may ship


def flat_tensors(prefix: str, params) -> dict[str, np.ndarray]:
  flat = traverse_util.flatten_dict(params, sep='/')
  return {f'{prefix}/{name}': np.ascontiguousarray(np.asarray(value, np.float32))
          for name, value in flat.items()}


def load(folder, source: str | None = None) -> TrainedModel:
  """The model exported to `folder`; checks the weights file against the manifest's checksum
  first."""
  folder = Path(folder)
  weights = folder / WEIGHTS
  if not weights.exists():
    raise FileNotFoundError(f'{weights} not found: this folder has no exported weights '
                            f'(python -m diffusets_jax.pretrained --export_from WORKDIR makes them)')
  manifest = json.loads((folder / 'manifest.json').read_text())
  if sha256(weights) != manifest['sha256']:
    raise ValueError(f'{weights} does not match the SHA-256 in manifest.json: the file is '
                     f'damaged or was replaced; reinstall the package')
  tensors = load_file(str(weights))
  params = {}
  for prefix in ('vae', 'unet'):
    flat = {name[len(prefix) + 1:]: value for name, value in tensors.items()
            if name.startswith(prefix + '/')}
    params[prefix] = traverse_util.unflatten_dict(flat, sep='/')
  config = workdirs.load_config(folder)  # fills fields the exported config predates
  conditioning = json.loads((folder / 'conditioning.json').read_text())
  return TrainedModel(config, params['vae'], params['unet'], conditioning,
                      source=source or str(folder),
                      unet_weights=manifest.get('unet_weights', 'params'),
                      unet_step=manifest.get('diffusion_step', 0))


def export(model: TrainedModel, folder, max_bytes: int | None = MAX_BYTES) -> Path:
  """Writes a trained model's VAE and U-Net sampling weights, config and record to `folder`;
  refuses weights over max_bytes (None: no limit, for a model that is not shipped)."""
  folder = Path(folder)
  tensors = {**flat_tensors('vae', model.vae_params), **flat_tensors('unet', model.unet_params)}
  folder.mkdir(parents=True, exist_ok=True)
  tmp = folder / (WEIGHTS + '.tmp')
  save_file(tensors, str(tmp))
  size = tmp.stat().st_size
  if max_bytes is not None and size > max_bytes:
    tmp.unlink()
    raise ValueError(f'the weights take {size / 2**20:.1f} MiB, more than the '
                     f'{max_bytes / 2**20:.0f} MiB a package may ship; train a smaller model')
  tmp.replace(folder / WEIGHTS)
  write_atomic(folder / 'config.json', model.config.to_json(indent=1))
  write_atomic(folder / 'conditioning.json', json.dumps(model.conditioning, indent=1))
  manifest = dict(
      sha256=sha256(folder / WEIGHTS), bytes=size, dtype='float32',
      unet_weights=model.unet_weights, diffusion_step=model.unet_step,
      parameters={prefix: int(sum(v.size for k, v in tensors.items() if k.startswith(prefix)))
                  for prefix in ('vae', 'unet')},
      shapes={name: list(value.shape) for name, value in sorted(tensors.items())})
  write_atomic(folder / 'manifest.json', json.dumps(manifest, indent=1))
  for name in FILES:
    (folder / name).chmod(0o644)  # package data: readable by every user of the installation
  return folder
