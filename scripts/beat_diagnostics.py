r"""Why generated ECGs read slow: pauses (dropped or undetected beats) in an evaluation's output.

  python scripts/beat_diagnostics.py --evaluation runs/W/evaluation/test_ptbxl_g3 \
      --out docs/pretrained/beat_diagnostics --tag ptbxl_test

Reads the evaluation's generated.npz (written by evaluate.py or guidance_sweep.py) and writes,
named after --tag:
- TAG.json (beat_diagnostics.json without a tag): for generated and real ECGs, the share with
  a pause (longest RR interval > 1.5 x the median RR) and, per band of requested rate, the
  heart-rate MAE and bias of the evaluation's rate (mean RR) beside the rate from the median
  RR. The median-RR rate is a diagnostic that a single pause barely moves; the evaluation's
  metric stays the mean-RR rate. Beside them, the pauses and rate error from the second,
  independent detector (wfdb's XQRS on lead II), and the share of pauses both detectors flag.
- pauses_TAG.png (pauses.png): lead II and V2 of the first generated ECGs with a pause, with
  the beats each detector found.
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffusets_jax.datasets import heart_rate as hr_detector  # noqa: E402
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ  # noqa: E402
from diffusets_jax.evaluation.beats import diagnose  # noqa: E402
from diffusets_jax.io import plots  # noqa: E402

LEAD_II, LEAD_V2 = 1, 7


def plot_pauses(generated, requested, record_ids, path: Path, count: int = 6):
  ratio = hr_detector.longest_rr_ratio(generated)
  picks = np.flatnonzero(ratio > hr_detector.PAUSE_RATIO)[:count]
  if not len(picks):
    return False
  beats = hr_detector.detect_beats(np.asarray(generated, np.float64))
  rates = hr_detector.heart_rate(np.asarray(generated, np.float64))
  xqrs_ratio = hr_detector.second_detector(generated[picks])[1]
  t = np.arange(generated.shape[1]) / SAMPLE_RATE_HZ
  fig, axes = plt.subplots(len(picks), 1, figsize=(13, 2.1 * len(picks)), squeeze=False)
  for ax, i, second_ratio in zip(axes[:, 0], picks, xqrs_ratio):
    ax.plot(t, generated[i, :, LEAD_II], lw=0.8, label='II')
    ax.plot(t, generated[i, :, LEAD_V2] - 2.0, lw=0.8, label='V2 (offset -2 mV)')
    for position in np.flatnonzero(beats[i]):
      ax.axvline(position / SAMPLE_RATE_HZ, color='red', lw=0.6, alpha=0.6)
    xqrs = hr_detector.second_detector_beats(generated[i, :, LEAD_II]) / SAMPLE_RATE_HZ
    top = generated[i, :, LEAD_II].max() + 0.3
    ax.plot(xqrs, np.full(len(xqrs), top), 'v', color='black', ms=4,
            label='second detector (XQRS, II)')
    ax.set_title(f'record {record_ids[i]}: requested {requested[i]:.0f} bpm, measured '
                 f'{rates[i]:.0f} bpm (mean RR), longest RR / median RR {ratio[i]:.1f} '
                 f'(second detector {second_ratio:.1f})', fontsize=9)
    ax.set_ylabel('mV')
  axes[0, 0].legend(fontsize=8, loc='upper right')
  axes[-1, 0].set_xlabel('s (red lines: detected beats; black marks: the second detector\'s)')
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=80)
  plt.close(fig)
  return True


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--evaluation', required=True, type=Path,
                      help='an evaluation folder holding generated.npz')
  parser.add_argument('--out', required=True, type=Path, help='folder for the JSON and figure')
  parser.add_argument('--tag', default='', help='names the outputs TAG.json and pauses_TAG.png')
  args = parser.parse_args()
  source = args.evaluation / 'generated.npz'
  if not source.exists():
    parser.error(f'{source} not found: run evaluate.py (or scripts/guidance_sweep.py) first')
  with np.load(source) as f:
    generated, real = f['generated'].astype(np.float64), f['real'].astype(np.float64)
    requested, record_ids = f['requested_hr'].astype(np.float64), f['record_id']
  summary = dict(evaluation=str(args.evaluation), **diagnose(generated, real, requested))
  args.out.mkdir(parents=True, exist_ok=True)
  json_path = args.out / (f'{args.tag}.json' if args.tag else 'beat_diagnostics.json')
  figure_path = args.out / (f'pauses_{args.tag}.png' if args.tag else 'pauses.png')
  json_path.write_text(json.dumps(summary, indent=1))
  plotted = plot_pauses(generated, requested, record_ids, figure_path)
  print(json.dumps(dict(pauses=summary['pauses'], all=summary['all']), indent=1))
  print(f'wrote {json_path}' + (f' and {figure_path}' if plotted else ' (no ECG with a pause)'))


if __name__ == '__main__':
  main()
