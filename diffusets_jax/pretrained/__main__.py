"""python -m diffusets_jax.pretrained --export_from SOURCE [--derive_limb_leads] [--vae_from WORKDIR]
[--out FOLDER]: writes a trained model (a workdir's VAE and U-Net EMA weights, or an exported
model) as an exported model, by default the shipped one.

--vae_from takes the decoder a workdir fine-tuned from SOURCE with its encoder frozen
(vae.train_encoder False, e.g. configs/pretrained_decoder_gan.py): the latents, and so the U-Net,
stay valid.

A workdir fine-tuned from another model (train.init_from) without a VAE stage of its own samples
with that model's VAE; it exports as the source stores it: weights, limb-lead form and config.vae
(the record of how that VAE was trained), whatever the workdir's config says of the VAE.

--derive_limb_leads turns its 12-lead decoder into one with `vae.derived_limb_leads`, no training:
the last conv's outputs are projected so that III, aVR, aVL and aVF are computed from I and II
(models/limb_leads.py, `fold_into_decoder`). The shipped model was made so:

  python -m diffusets_jax.pretrained --export_from runs/pretrained_finetune --derive_limb_leads
"""
import argparse
import dataclasses
import json
from pathlib import Path

from diffusets_jax import pretrained
from diffusets_jax.models import limb_leads
from diffusets_jax.store import exported, loading, open_model
from diffusets_jax.store import workdir as workdirs


def with_derived_limb_leads(model):
  """The model with its decoder folded into one that derives the limb leads from I and II."""
  if model.config.vae.derived_limb_leads:
    raise ValueError(f'{model.source} already derives its limb leads (vae.derived_limb_leads)')
  config = model.config.copy_and_resolve_references()
  config.vae.derived_limb_leads = True
  return dataclasses.replace(model, config=config,
                             vae_params=limb_leads.fold_into_decoder(model.vae_params))


def with_init_source_vae(model):
  """A fine-tuning workdir's model with the VAE of the model it started from, as stored there."""
  source = loading.init_source(model.config)
  config = model.config.copy_and_resolve_references()
  config.vae = source.config.vae
  return dataclasses.replace(model, config=config, vae_params=source.vae_params)


def trains_no_vae(folder) -> bool:
  """A workdir (not an exported model) fine-tuned from another model, with no VAE of its own."""
  folder = Path(folder)
  if not workdirs.config_path(folder).is_file() or (folder / exported.WEIGHTS).is_file():
    return False
  return loading.samples_with_init_source_vae(workdirs.load_config(folder), folder)


def with_vae_from(model, folder):
  """The model with the VAE a workdir fine-tuned from it (vae.train_encoder False): the encoder
  must be the model's own, tensor for tensor, so the U-Net's latents stay valid; the decoder and
  the config's vae section (how it was trained) are the workdir's."""
  config = workdirs.load_config(folder)
  params = loading.workdir_vae_params(config, folder)
  differ = loading.latents_differ(model.config, model.vae_params, config, params)
  if differ:
    raise ValueError(f'the VAE in {folder} has another encoder or latent scale than '
                     f'{model.source} ({differ}): the U-Net\'s latents would not be its; only a '
                     f'decoder fine-tuned with vae.train_encoder=False swaps')
  merged = model.config.copy_and_resolve_references()
  merged.vae = config.vae
  return dataclasses.replace(model, config=merged, vae_params=params)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--export_from', required=True,
                      help="trained workdir (train.py), exported folder, or 'pretrained'")
  parser.add_argument('--derive_limb_leads', action='store_true',
                      help='fold the 12-lead decoder into one that computes III, aVR, aVL and '
                      'aVF from I and II')
  parser.add_argument('--vae_from', default=None,
                      help='workdir whose decoder, fine-tuned from this model with '
                      'vae.train_encoder=False, replaces the model\'s (the encoder must be equal)')
  parser.add_argument('--out', default=str(pretrained.FOLDER),
                      help='folder (default: the package\'s own)')
  args = parser.parse_args(argv)
  model = open_model(args.export_from, use_ema=True)
  if trains_no_vae(args.export_from):
    model = with_init_source_vae(model)
  if args.derive_limb_leads:
    model = with_derived_limb_leads(model)
  if args.vae_from:
    model = with_vae_from(model, args.vae_from)
  folder = exported.export(model, args.out)
  manifest = json.loads((folder / 'manifest.json').read_text())
  print(f'wrote {folder / exported.WEIGHTS} ({manifest["bytes"] / 2**20:.1f} MiB, '
        f'{manifest["parameters"]}), config.json, conditioning.json, manifest.json')


if __name__ == '__main__':
  main()
