"""python -m diffusets_jax.pretrained --export_from SOURCE [--derive_limb_leads] [--out FOLDER]:
writes a trained model (a workdir's VAE and U-Net EMA weights, or an exported model) as an
exported model, by default the shipped one.

--derive_limb_leads turns its 12-lead decoder into one with `vae.derived_limb_leads`, no training:
the last conv's outputs are projected so that III, aVR, aVL and aVF are computed from I and II
(models/limb_leads.py, `fold_into_decoder`). The shipped model was made so:

  python -m diffusets_jax.pretrained --export_from runs/pretrained_finetune --derive_limb_leads
"""
import argparse
import dataclasses
import json

from diffusets_jax import pretrained
from diffusets_jax.models import limb_leads
from diffusets_jax.store import exported, open_model


def with_derived_limb_leads(model):
  """The model with its decoder folded into one that derives the limb leads from I and II."""
  if model.config.vae.derived_limb_leads:
    raise ValueError(f'{model.source} already derives its limb leads (vae.derived_limb_leads)')
  config = model.config.copy_and_resolve_references()
  config.vae.derived_limb_leads = True
  return dataclasses.replace(model, config=config,
                             vae_params=limb_leads.fold_into_decoder(model.vae_params))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--export_from', required=True,
                      help="trained workdir (train.py), exported folder, or 'pretrained'")
  parser.add_argument('--derive_limb_leads', action='store_true',
                      help='fold the 12-lead decoder into one that computes III, aVR, aVL and '
                      'aVF from I and II')
  parser.add_argument('--out', default=str(pretrained.FOLDER),
                      help='folder (default: the package\'s own)')
  args = parser.parse_args(argv)
  model = open_model(args.export_from, use_ema=True)
  if args.derive_limb_leads:
    model = with_derived_limb_leads(model)
  folder = exported.export(model, args.out)
  manifest = json.loads((folder / 'manifest.json').read_text())
  print(f'wrote {folder / exported.WEIGHTS} ({manifest["bytes"] / 2**20:.1f} MiB, '
        f'{manifest["parameters"]}), config.json, conditioning.json, manifest.json')


if __name__ == '__main__':
  main()
