"""The pretrained model shipped inside the package, and the command that exports it.

  python -m diffusets_jax.pretrained --export_from runs/pretrained   # (re)writes the files here

Files beside this module:
  weights.safetensors  VAE (encoder and decoder) and the U-Net's EMA weights, float32, with
                       '/'-joined Flax parameter paths prefixed 'vae/' and 'unet/'
  config.json          the training config as run (configs/pretrained_finetune.py)
  conditioning.json    the text encoder, prompt template and missing-value fills it was trained with
  manifest.json        every tensor's shape, the weights file's SHA-256 and size, and provenance
Safetensors holds raw arrays only: loading runs no code.
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from flax import traverse_util

HERE = Path(__file__).resolve().parent
WEIGHTS = 'weights.safetensors'
MAX_BYTES = 30 * 2 ** 20


def sha256(path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def flat_tensors(prefix: str, params) -> dict[str, np.ndarray]:
  flat = traverse_util.flatten_dict(params, sep='/')
  return {f'{prefix}/{name}': np.ascontiguousarray(np.asarray(value, np.float32))
          for name, value in flat.items()}


def load(folder=HERE):
  """(config, vae params, U-Net params, conditioning record) of the shipped model; checks the
  weights file against the manifest's checksum first."""
  from safetensors.numpy import load_file
  from diffusets_jax.training import checkpoints
  folder = Path(folder)
  weights = folder / WEIGHTS
  if not weights.exists():
    raise FileNotFoundError(f'{weights} not found: this installation has no pretrained weights '
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
  config = checkpoints.load_config(folder)  # fills fields the shipped config predates
  conditioning = json.loads((folder / 'conditioning.json').read_text())
  return config, params['vae'], params['unet'], conditioning


def export(workdir, folder=HERE) -> Path:
  """Writes a trained workdir's VAE and U-Net (EMA where kept) as the shipped model."""
  from safetensors.numpy import save_file
  from diffusets_jax.generate import sampling_params
  from diffusets_jax.training import checkpoints, trainer
  workdir, folder = Path(workdir), Path(folder)
  config = checkpoints.load_config(workdir)
  vae = trainer.workdir_vae_params(config, workdir)
  unet_state = checkpoints.restore_state(workdir, 'diffusion',
                                         trainer.abstract_state(config, 'diffusion'))
  unet = sampling_params(unet_state, use_ema=True)
  tensors = {**flat_tensors('vae', vae), **flat_tensors('unet', unet)}
  folder.mkdir(parents=True, exist_ok=True)
  tmp = folder / (WEIGHTS + '.tmp')
  save_file(tensors, str(tmp))
  size = tmp.stat().st_size
  if size > MAX_BYTES:
    tmp.unlink()
    raise ValueError(f'the weights take {size / 2**20:.1f} MiB, more than the '
                     f'{MAX_BYTES / 2**20:.0f} MiB a package may ship; train a smaller model')
  tmp.replace(folder / WEIGHTS)
  checkpoints.write_atomic(folder / 'config.json', config.to_json(indent=1))
  checkpoints.write_atomic(folder / 'conditioning.json',
                           trainer.conditioning_path(workdir).read_text())
  manifest = dict(
      sha256=sha256(folder / WEIGHTS), bytes=size, dtype='float32',
      unet_weights='ema' if getattr(unet_state, 'ema_params', None) is not None else 'params',
      diffusion_step=int(unet_state.step),
      parameters={prefix: int(sum(v.size for k, v in tensors.items() if k.startswith(prefix)))
                  for prefix in ('vae', 'unet')},
      shapes={name: list(value.shape) for name, value in sorted(tensors.items())})
  checkpoints.write_atomic(folder / 'manifest.json', json.dumps(manifest, indent=1))
  for name in (WEIGHTS, 'config.json', 'conditioning.json', 'manifest.json'):
    (folder / name).chmod(0o644)  # package data: readable by every user of the installation
  return folder


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--export_from', required=True, help='trained workdir (train.py)')
  parser.add_argument('--out', default=str(HERE), help='folder (default: the package\'s own)')
  args = parser.parse_args()
  folder = export(args.export_from, args.out)
  manifest = json.loads((folder / 'manifest.json').read_text())
  print(f'wrote {folder / WEIGHTS} ({manifest["bytes"] / 2**20:.1f} MiB, '
        f'{manifest["parameters"]}), config.json, conditioning.json, manifest.json')


if __name__ == '__main__':
  main()
