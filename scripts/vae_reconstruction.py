"""Stage-1 check of a VAE on every split of the bundled data: reconstruction MAE beside a flat
line's, how often the heart rate is kept within 3 bpm, and where in frequency the error lies
(evaluate.py's `vae` section, without generating anything).

  python scripts/vae_reconstruction.py --out vae_error_bands.json               # shipped VAE
  python scripts/vae_reconstruction.py --workdir runs/vae_lat8 --out lat8.json  # a trained one

A workdir needs only its vae stage (train.py --stage vae). Writes one JSON with an entry per
DATASET_SPLIT (ptbxl_train, ..., ludb_test) and prints the ratio to the flat line as it goes.
"""
import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from diffusets_jax.datasets import input_pipeline
from diffusets_jax.evaluation import evaluator
from diffusets_jax.models import factory
from diffusets_jax.training import checkpoints, trainer

SPLITS = ('train', 'val', 'test')


def load_vae(workdir):
  """(config, VAE params) of a workdir's vae stage, or of the shipped model for None."""
  if workdir is None:
    from diffusets_jax import pretrained
    config, vae_params, _, _ = pretrained.load()
    return config, vae_params
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise SystemExit(f'--workdir {workdir}: no such folder')
  config = checkpoints.load_config(workdir)
  return config, trainer.workdir_vae_params(config, workdir)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', help='a workdir with a trained vae stage; omitted: the '
                      'shipped pretrained VAE')
  parser.add_argument('--out', required=True, help='JSON file to write')
  args = parser.parse_args(argv)

  config, vae_params = load_vae(args.workdir)
  # vae_reconstruction needs only these three of a Generator.
  generator = SimpleNamespace(vae=factory.make_vae(config), vae_params=vae_params, config=config)
  datasets = config.data.name.split('+')
  result = dict(workdir=args.workdir or 'pretrained', command=' '.join(['python'] + sys.argv),
                latent_channels=config.vae.latent_channels, channels=list(config.vae.channels))
  for dataset in datasets:
    for split in SPLITS:
      split_data = input_pipeline.open_split(config.data, split, dataset)
      ecg = input_pipeline.read_all(split_data, keys=('ecg',))['ecg']
      entry, _ = evaluator.vae_reconstruction(generator, ecg)
      result[f'{dataset}_{split}'] = entry
      print(f'{dataset} {split}: {len(ecg)} records, MAE {entry["mae_mv"]:.4f} mV = '
            f'{entry["mae_over_flat_line"]:.3f} x flat line, rate within 3 bpm '
            f'{entry["heart_rate_within_3bpm"]:.0%}', flush=True)
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(evaluator.json_ready(result), indent=1, allow_nan=False))
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
