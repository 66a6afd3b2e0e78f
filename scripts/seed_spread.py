"""How far the sampling seed alone moves evaluate.py's figures: several runs that differ only
in --seed, each metric's values, mean, sd, min and max in one table.

  for SEED in 0 1 2; do
    python evaluate.py --clip_workdir runs/clip --split test --dataset ptbxl --seed $SEED \
        --out runs/test_seed$SEED
  done
  python scripts/seed_spread.py runs/test_seed0 runs/test_seed1 runs/test_seed2 \
      --out runs/test_seed_spread

Each argument is an evaluation folder or its metrics.json. The runs must agree on everything
but the seed (model, split, dataset, records, sampler, steps, guidance), or the spread would
mix in another change: a mismatch is an error that names the field. Writes seed_spread.json
and seed_spread.md to --out.
"""
import argparse
import json
from pathlib import Path

from diffusets_jax.evaluation.seed_spread import load, markdown, spread


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+', help='evaluation folders (or metrics.json files)')
  parser.add_argument('--out', required=True, help='folder for seed_spread.json and .md')
  args = parser.parse_args()
  try:
    result = spread([load(path) for path in args.runs], [str(path) for path in args.runs])
  except (FileNotFoundError, ValueError) as error:
    parser.error(str(error))
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'seed_spread.json').write_text(json.dumps(result, indent=1))
  table = markdown(result)
  (out / 'seed_spread.md').write_text(table)
  print(table + f'wrote {out}/seed_spread.json, {out}/seed_spread.md')


if __name__ == '__main__':
  main()
