"""python -m diffusets_jax.pretrained --export_from WORKDIR [--out FOLDER]: writes a trained
workdir (its VAE and the U-Net's EMA weights) as an exported model, by default the shipped one."""
import argparse
import json

from diffusets_jax import pretrained
from diffusets_jax.store import exported, open_model


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--export_from', required=True, help='trained workdir (train.py)')
  parser.add_argument('--out', default=str(pretrained.FOLDER),
                      help='folder (default: the package\'s own)')
  args = parser.parse_args()
  folder = exported.export(open_model(args.export_from, use_ema=True), args.out)
  manifest = json.loads((folder / 'manifest.json').read_text())
  print(f'wrote {folder / exported.WEIGHTS} ({manifest["bytes"] / 2**20:.1f} MiB, '
        f'{manifest["parameters"]}), config.json, conditioning.json, manifest.json')


if __name__ == '__main__':
  main()
