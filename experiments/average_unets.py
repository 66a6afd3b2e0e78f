"""Exports a model whose U-Net is a weighted average of two U-Nets that share one VAE (a "model
soup": a fine-tuning and the model it started from lie in one basin, so their average is a model
too). Measured in docs/experiments/unet_weight_average.md.

  python experiments/average_unets.py --base pretrained --other runs/ptbxl1999_finetune \\
      --weight 0.5 --out runs/soup50

The VAE, config and conditioning are the base model's; the U-Net is
(1 - weight) x base + weight x other, tensor by tensor (EMA weights where kept). Both models must
have the same encoder, tensor for tensor, and latent scale, or the other U-Net was trained on
other latents; their decoders may differ (the base model's decodes).
"""
import argparse
import dataclasses

import jax
import numpy as np

from diffusets_jax.store import exported, loading, open_model


def average_unets(base, other, weight: float):
  if not 0.0 <= weight <= 1.0:
    raise ValueError(f'--weight is the share of the other U-Net in [0, 1], got {weight}')
  differ = loading.latents_differ(base.config, base.vae_params, other.config, other.vae_params)
  if differ:
    raise ValueError(f'{other.source} has other latents than {base.source} ({differ}): its U-Net '
                     f'was trained on them')
  if jax.tree.structure(base.unet_params) != jax.tree.structure(other.unet_params):
    raise ValueError(f'the U-Nets of {base.source} and {other.source} differ in architecture')
  mixed = jax.tree.map(lambda a, b: (1.0 - weight) * np.asarray(a) + weight * np.asarray(b),
                       base.unet_params, other.unet_params)
  return dataclasses.replace(base, unet_params=mixed,
                             source=f'{base.source} and {other.source} at {weight}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--base', default='pretrained',
                      help="model whose VAE, config and conditioning are kept: a workdir, an "
                      "exported folder or 'pretrained'")
  parser.add_argument('--other', required=True, help='model whose U-Net is averaged in')
  parser.add_argument('--weight', type=float, default=0.5,
                      help="the other U-Net's share (0: the base model's U-Net, 1: the other's)")
  parser.add_argument('--out', required=True, help='folder of the exported model')
  args = parser.parse_args()
  model = average_unets(open_model(args.base, use_ema=True), open_model(args.other, use_ema=True),
                        args.weight)
  folder = exported.export(model, args.out)
  print(f'wrote {folder}: U-Net {1 - args.weight:g} x {args.base} + {args.weight:g} x '
        f'{args.other}')


if __name__ == '__main__':
  main()
