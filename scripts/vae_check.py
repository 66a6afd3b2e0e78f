"""How close a VAE's reconstructions are to real ECGs: evaluate.py's stage-1 figures (MAE beside a
flat line's, heart rate kept within 3 bpm, error by frequency band), the limb-lead residual, and
the classifier two-sample test of reconstructions against their own originals (12 leads and lead
II, beside the real-vs-real floor), for one or more VAEs on the same records.

  python scripts/vae_check.py --vae pretrained runs/my_vae --data_from runs/my_vae \\
      --split val --dataset ptbxl --out runs/vae_check_val.json --plot runs/vae_check_val.png

Each --vae is 'pretrained', an exported folder, or a workdir that has trained its VAE (`train.py
--stage vae`). The records are those of --data_from's data settings (default: the first VAE's).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from diffusets_jax.datasets import input_pipeline
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ, STANDARD_LEADS
from diffusets_jax.evaluation import evaluator, metrics
from diffusets_jax.generate import VAECodec
from diffusets_jax.io import plots
from diffusets_jax.store import loading
from diffusets_jax.store import workdir as workdirs


def limb_residual_median(ecg: np.ndarray) -> float:
  """Median over the ECGs of RMS(III - (II - I)) relative to the RMS limb-lead amplitude."""
  return float(np.median(metrics.lead_residuals(ecg)['III = II - I']['relative']))


def check(name: str, real: np.ndarray, real_residual: float, evaluation, seed: int):
  """(figures, reconstructions) of one VAE on `real`."""
  config, params = loading.open_vae(name)
  start = time.time()
  figures, recon = evaluator.vae_reconstruction(VAECodec(config, params), real)
  reconstruct_s = time.time() - start
  tests = evaluator.two_sample_tests(real, None, recon, evaluation, seed)
  return dict(vae=name, derived_limb_leads=bool(config.vae.derived_limb_leads),
              spectral_weight=float(config.vae.spectral_weight),
              adversarial_weight=float(config.vae.adversarial_weight), **figures,
              limb_residual_median=dict(reconstructed=limb_residual_median(recon),
                                        real=real_residual),
              two_sample=tests, reconstruct_s=round(reconstruct_s, 1)), recon


PLOT_LEADS = ('II', 'V2')
PLOT_SECONDS = 4.0


def plot_reconstructions(real, reconstructions: dict, out, records: int = 3):
  """Lead II and V2 over the first PLOT_SECONDS of the first `records` ECGs: the real one in
  black, each VAE's reconstruction in a colour of its own."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  samples = int(PLOT_SECONDS * SAMPLE_RATE_HZ)
  t = np.arange(samples) / SAMPLE_RATE_HZ
  fig, axes = plt.subplots(records, len(PLOT_LEADS), figsize=(12, 2.2 * records), squeeze=False)
  for row in range(records):
    for col, lead in enumerate(PLOT_LEADS):
      index = STANDARD_LEADS.index(lead)
      ax = axes[row, col]
      ax.plot(t, real[row, :samples, index], color='black', lw=1.2, label='real')
      for name, recon in reconstructions.items():
        ax.plot(t, recon[row, :samples, index], lw=0.9, label=name)
      ax.set_title(f'record {row + 1}, lead {lead}', fontsize=9)
      ax.set_ylabel('mV')
  for ax in axes[-1]:
    ax.set_xlabel('s')
  axes[0, 0].legend(fontsize=8, loc='upper right')
  fig.tight_layout()
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  plots.save_figure(fig, out, dpi=90)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--vae', nargs='+', required=True,
                      help="'pretrained', exported folders or workdirs with a trained VAE")
  parser.add_argument('--data_from', default=None,
                      help="workdir whose data settings choose the records (default: the first "
                           "--vae's; 'pretrained' uses the bundled data)")
  parser.add_argument('--split', default='val', choices=('train', 'val', 'test'))
  parser.add_argument('--dataset', default=None, help='one dataset of several (e.g. ptbxl)')
  parser.add_argument('--num', type=int, default=0, help='records (0: the whole split)')
  parser.add_argument('--seed', type=int, default=0, help='record choice, halves, classifiers')
  parser.add_argument('--out', required=True, help='JSON file to write')
  parser.add_argument('--plot', default=None,
                      help='PNG to draw: lead II and V2 of three records, real and reconstructed')
  args = parser.parse_args()
  source = args.data_from or args.vae[0]
  config = (loading.open_vae(source)[0] if source == loading.PRETRAINED
            else workdirs.load_config(source))
  data = input_pipeline.read_all(input_pipeline.open_split(config.data, args.split, args.dataset),
                                 keys=('ecg',))
  index = evaluator.select_records(len(data['ecg']), args.num, args.seed, args.split)
  real = data['ecg'][index]
  real_residual = limb_residual_median(real)
  checked = {name: check(name, real, real_residual, config.evaluation, args.seed)
             for name in args.vae}
  results = [figures for figures, _ in checked.values()]
  if args.plot:
    plot_reconstructions(real, {name: recon for name, (_, recon) in checked.items()}, args.plot)
  report = dict(split=args.split, dataset=args.dataset, data_from=source, records=len(real),
                seed=args.seed, results=results, command=' '.join(['python'] + sys.argv))
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(evaluator.json_ready(report), indent=1))
  for row in results:
    twelve = row['two_sample']['reconstructed_12_leads']
    lead_ii = row['two_sample']['reconstructed_lead_ii']
    print(f"{row['vae']}: MAE / flat {row['mae_over_flat_line']:.3f}, rate within 3 bpm "
          f"{100 * row['heart_rate_within_3bpm']:.0f} %, III residual "
          f"{row['limb_residual_median']['reconstructed']:.4f} (real "
          f"{row['limb_residual_median']['real']:.4f}), C2ST reconstructed vs originals: 12 "
          f"leads {twelve['generated']:.3f} (floor {twelve['real']:.3f}), lead II "
          f"{lead_ii['generated']:.3f} (floor {lead_ii['real']:.3f})")
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
