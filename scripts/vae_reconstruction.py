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

from diffusets_jax.datasets import input_pipeline
from diffusets_jax.evaluation import evaluator
from diffusets_jax.generate import VAECodec
from diffusets_jax.store.loading import open_vae

SPLITS = ('train', 'val', 'test')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', help='a workdir with a trained vae stage; omitted: the '
                      'shipped pretrained VAE')
  parser.add_argument('--out', required=True, help='JSON file to write')
  args = parser.parse_args(argv)

  if args.workdir and not Path(args.workdir).is_dir():
    parser.error(f'--workdir {args.workdir}: no such folder')
  config, vae_params = open_vae(args.workdir or 'pretrained')
  codec = VAECodec(config, vae_params)
  datasets = config.data.name.split('+')
  result = dict(workdir=args.workdir or 'pretrained', command=' '.join(['python'] + sys.argv),
                latent_channels=config.vae.latent_channels, channels=list(config.vae.channels))
  for dataset in datasets:
    for split in SPLITS:
      split_data = input_pipeline.open_split(config.data, split, dataset)
      ecg = input_pipeline.read_all(split_data, keys=('ecg',))['ecg']
      entry, _ = evaluator.vae_reconstruction(codec, ecg)
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
