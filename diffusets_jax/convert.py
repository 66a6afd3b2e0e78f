"""Convert the authors' released DiffuSETS checkpoints into a diffusets-jax workdir, and back.

  python -m diffusets_jax.convert --vae vae_model.pth --unet unet_all.pth --out runs/reference
  python -m diffusets_jax.convert --export_from runs/reference --out exported/ [--format pth]

Import reads `.pth` with `torch.load(weights_only=True)` (PyTorch needed for this only; files
that need arbitrary code to unpickle are refused) or `.safetensors`. The workdir it writes loads in
sample.py and `Generator.from_workdir` like a trained one: config (text width inferred from the
checkpoint; 1536-d means OpenAI ada-002), the reference prompt template (sentences joined without
a space, as the authors' code), and the conditioning record. Export writes our params as state
dicts with exactly the reference names and shapes (vae_model.* as {'encoder', 'decoder'}): the
VAE and the U-Net weights the workdir samples with (the EMA where kept); options the reference
lacks are folded in (normalised patient inputs) or left out (the guidance's null condition, so the
export samples as guidance scale 1), so the reference code computes what this workdir does.
"""
import argparse
import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import jax
import orbax.checkpoint as ocp

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.conversion import reference_checkpoints as ref
from diffusets_jax.generate import sampling_params
from diffusets_jax.training import checkpoints, trainer

TIME_TABLES_FILE = 'reference_time_tables.npz'


def read_state_dict(path) -> dict:
  """A checkpoint file -> {name: float32 ndarray}, nested one level for {'encoder', 'decoder'}."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path} not found')
  if path.suffix == '.safetensors':
    from safetensors.numpy import load_file
    flat = load_file(str(path))
    parts = {name.split('.', 1)[0] for name in flat}
    if parts == {'encoder', 'decoder'}:
      return {part: {n.split('.', 1)[1]: t for n, t in flat.items() if n.startswith(part + '.')}
              for part in parts}
    return flat
  try:
    import torch
  except ModuleNotFoundError:
    raise ModuleNotFoundError(f'reading {path.name} needs PyTorch: pip install torch (the CPU '
                              f'build is enough), or give a .safetensors file') from None
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


def import_reference(vae_path, unet_path, out, text_encoder=None, text_model=None) -> Path:
  """Writes a workdir at `out` (which must not exist) from the reference checkpoints."""
  out = Path(out)
  if out.exists():
    raise FileExistsError(f'{out} exists; choose a new --out directory')
  vae_state_dict, unet_state_dict = read_state_dict(vae_path), read_state_dict(unet_path)
  text_dim = ref.text_dim_from_unet(unet_state_dict)
  config = diffusets.get_config()
  config.text.encoder, config.text.model = text_settings(text_dim, text_encoder, text_model)
  config.text.dim = text_dim
  config.text.template.separator = ''  # the authors' code joins the sentences directly
  config = config_validation.validate(config)
  print(f'text embedding width {text_dim}: {config.text.encoder} ({config.text.model})')

  vae_target = trainer.abstract_state(config, 'vae')
  unet_target = trainer.abstract_state(config, 'diffusion')
  vae_params = ref.vae_from_reference(vae_state_dict, vae_target.params)
  unet_params = ref.unet_from_reference(unet_state_dict, unet_target.params)
  tables = {name: unet_state_dict[name] for name in ref.time_table_names(unet_target.params)}

  # Everything goes to a temporary sibling first: a failure leaves no half-written workdir.
  out.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f'.{out.name}.tmp-'))
  try:
    for stage, target, params in (('vae', vae_target, vae_params),
                                  ('diffusion', unet_target, unet_params)):
      # A fresh optimizer state (AdamW moments at zero): fine-tuning starts from step 0.
      state = target.replace(step=0, params=params, opt_state=target.tx.init(params))
      mngr = checkpoints.manager(staging, stage)
      mngr.save(0, args=ocp.args.StandardSave(state))
      mngr.wait_until_finished()
    checkpoints.save_config(staging, config)
    record = trainer.conditioning_record(config, missing_age=None)
    checkpoints.write_atomic(trainer.conditioning_path(staging), json.dumps(record, indent=1))
    np.savez(staging / 'diffusion' / TIME_TABLES_FILE, **tables)
    staging.rename(out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return out


def export_reference(workdir, out, file_format: str = 'pth') -> list[Path]:
  """Writes vae_model.<fmt> and unet_all.<fmt> in the reference layout from a workdir: its VAE
  (a vae.latent_scale other than 0.18215 folded into its weights) and the U-Net weights it
  samples with (config.sampling.use_ema)."""
  workdir, out = Path(workdir), Path(out)
  config = checkpoints.load_config(workdir)
  vae_params = trainer.workdir_vae_params(config, workdir)
  # The U-Net weights our sampler uses (the EMA where the run kept one), so that the exported
  # model generates what this workdir generates.
  unet_params = sampling_params(checkpoints.restore_state(
      workdir, 'diffusion', trainer.abstract_state(config, 'diffusion')),
      config.sampling.use_ema)
  tables_path = workdir / 'diffusion' / TIME_TABLES_FILE
  tables = dict(np.load(tables_path)) if tables_path.exists() else None
  unet_params = ref.reference_equivalent_unet(jax.device_get(unet_params),
                                              config.unet.normalize_patient)
  vae_params = ref.reference_equivalent_vae(jax.device_get(vae_params), config.vae.latent_scale)
  files = {'vae_model': ref.vae_to_reference(vae_params),
           'unet_all': ref.unet_to_reference(unet_params, tables)}
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for stem, state in files.items():
    path = out / f'{stem}.{file_format}'
    tmp = path.with_name(f'.{path.name}.tmp')
    if file_format == 'pth':
      import torch
      from collections import OrderedDict

      def to_torch(value):
        if isinstance(value, dict):
          return OrderedDict((k, to_torch(v)) for k, v in value.items())
        return torch.from_numpy(np.array(value, np.float32))  # a writable copy
      torch.save(to_torch(state), tmp)
    else:
      from safetensors.numpy import save_file
      flat = state if stem == 'unet_all' else {
          f'{part}.{n}': t for part, sd in state.items() for n, t in sd.items()}
      save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, str(tmp))
    tmp.replace(path)
    written.append(path)
  return written


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m diffusets_jax.convert', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--vae', help='reference vae_model.pth (or .safetensors) to import')
  parser.add_argument('--unet', help='reference unet_all.pth (or .safetensors) to import')
  parser.add_argument('--export_from', metavar='WORKDIR', help='workdir to export instead')
  parser.add_argument('--out', required=True, help='import: new workdir; export: directory')
  parser.add_argument('--format', default='pth', choices=['pth', 'safetensors'],
                      help='export file format (pth needs PyTorch)')
  parser.add_argument('--text_encoder', choices=['openai', 'minilm', 'hashing'],
                      help='the encoder the text embeddings came from (default: openai for '
                           '1536-d)')
  parser.add_argument('--text_model', help='that encoder\'s model name')
  args = parser.parse_args(argv)
  try:
    if args.export_from:
      for path in export_reference(args.export_from, args.out, args.format):
        print(f'wrote {path}')
    else:
      if not (args.vae and args.unet):
        parser.error('import needs both --vae and --unet (or use --export_from WORKDIR)')
      out = import_reference(args.vae, args.unet, args.out, args.text_encoder, args.text_model)
      print(f'wrote workdir {out}: sample with  python sample.py --workdir {out} --text ...')
  except (ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
