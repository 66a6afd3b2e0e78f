"""Recorded heart rates of the training ECGs whose reports mention each phrase: what rates the
data pair with a text (e.g. how many 'sinus rhythm' records are above 100 bpm).

  python experiments/heart_rate_by_report.py --config pretrained \
      --phrase "sinus rhythm" --phrase "sinus tachycardia" --out rates_by_report.json

A phrase matches a record when it occurs in any of its reports (case-insensitive).
"""
import argparse
import importlib
import json
from pathlib import Path

import numpy as np

from diffusets_jax.datasets import heart_rate, input_pipeline

DEFAULT_PHRASES = ('sinus rhythm', 'sinus tachycardia', 'sinus bradycardia',
                   'atrial fibrillation')
def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', default='pretrained',
                      help='a config module in configs/ (pretrained, tiny, diffusets)')
  parser.add_argument('--split', default='train')
  parser.add_argument('--phrase', action='append', default=None,
                      help=f'repeatable; default: {", ".join(DEFAULT_PHRASES)}')
  parser.add_argument('--above_bpm', type=float, default=100.0)
  parser.add_argument('--out', default=None, help='JSON file to write (default: print only)')
  args = parser.parse_args()
  config = importlib.import_module(f'configs.{args.config}').get_config()
  data = input_pipeline.read_all(input_pipeline.open_split(config.data, args.split))
  rows = heart_rate.rates_by_phrase(data['reports'], data['heart_rate'],
                                    args.phrase or DEFAULT_PHRASES, args.above_bpm)
  rates = np.asarray(data['heart_rate'], np.float64)
  result = dict(config=args.config, split=args.split, records=len(rates),
                above_bpm=args.above_bpm, records_above=int((rates > args.above_bpm).sum()),
                by_phrase=rows)
  print(json.dumps(result, indent=1))
  if args.out:
    Path(args.out).write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
  main()
