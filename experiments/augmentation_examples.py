r"""Real training records beside their augmented copies, lead II with the detected beats.

  python experiments/augmentation_examples.py --config configs/pretrained.py --num 4 --copies 2 \
      --kind shift --out docs/pretrained/tried_shift_copies/shift_examples.png

Reads the first --num training records of the config's data (PTB-XL and LUDB for the shipped
recipe), makes --copies copies of each exactly as the latent encoding does
(`augmentation.with_copies` with the config's seed), and draws each record above its copies,
with each one's measured rate, so that the seam where a copy is continued by the record's own
cycles can be checked by eye.
"""
import argparse
import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffusets_jax.datasets import augmentation, heart_rate, input_pipeline  # noqa: E402
from diffusets_jax.datasets.preprocessing import NUM_SAMPLES, SAMPLE_RATE_HZ  # noqa: E402
from diffusets_jax.io import plots  # noqa: E402

LEAD_II = 1
KINDS = ('shift', 'stretch')


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('config_module', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', default='configs/pretrained.py')
  parser.add_argument('--num', type=int, default=4, help='training records drawn')
  parser.add_argument('--copies', type=int, default=2, help='copies drawn per record')
  parser.add_argument('--kind', choices=KINDS, default='shift')
  parser.add_argument('--out', required=True, help='PNG path')
  args = parser.parse_args()
  if args.num < 1 or args.copies < 1:
    parser.error('--num and --copies must be at least 1')
  config = load_config(args.config)
  records = input_pipeline.open_split(config.data, 'train')
  shifted = args.kind == 'shift'
  source = augmentation.with_copies(records, 0 if shifted else args.copies,
                                    config.diffusion.stretch_max_factor,
                                    args.copies if shifted else 0, config.seed)
  n = len(records)
  rows = args.num * (1 + args.copies)
  figure, axes = plt.subplots(rows, 1, figsize=(14, 1.6 * rows), sharex=True)
  t = np.arange(NUM_SAMPLES) / SAMPLE_RATE_HZ
  for r in range(args.num):
    index = [r + n * k for k in range(1 + args.copies)]
    for k, example in enumerate(source.__getitems__(index)):
      ax = axes[r * (1 + args.copies) + k]
      ecg = np.asarray(example['ecg'], np.float64)
      beats = np.flatnonzero(heart_rate.detect_beats(ecg[None])[0])
      ax.plot(t, ecg[:, LEAD_II], lw=0.7, color='k' if k == 0 else 'tab:blue')
      ax.plot(t[beats], ecg[beats, LEAD_II], 'rv', ms=4)
      ax.set_ylabel('mV')
      ax.set_title(f'{example["record_id"].decode()}: {float(example["heart_rate"]):.0f} bpm '
                   f'({"record" if k == 0 else args.kind + "ed copy"})', fontsize=8, loc='left')
  axes[-1].set_xlabel('s (lead II; red: detected beats)')
  figure.tight_layout()
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  plots.save_figure(figure, out, dpi=90)
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
