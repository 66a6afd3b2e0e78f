"""Figures: ECGs on standard paper, and training curves; every PNG saved as a palette PNG."""
import io
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from diffusets_jax.datasets.preprocessing import STANDARD_LEADS  # noqa: E402

PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
MM_PER_INCH = 25.4
LAYOUT = (('I', 'aVR', 'V1', 'V4'), ('II', 'aVL', 'V2', 'V5'), ('III', 'aVF', 'V3', 'V6'))
PALETTE_COLOURS = 256


def save_figure(fig, path, dpi: float) -> Path:
  """`fig` -> a PNG of at most 256 colours, about 40 % of the bytes of matplotlib's own RGBA PNG
  (the docs' figures count against the tracked tree's 50 MiB). The plots are lines and text in a
  few colours, so the palette loses nothing visible; no dithering, so lines stay clean."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=dpi)
  save_palette_png(Image.open(buffer), path)
  return Path(path)


def save_palette_png(image: Image.Image, path) -> None:
  """Any image (an RGBA figure, an older PNG re-encoded) -> an optimised palette PNG at `path`."""
  palette = image.convert('RGB').quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT,
                                          dither=Image.Dither.NONE)
  palette.save(path, format='png', optimize=True)


def plot_training_curves(logs: dict, out) -> Path | None:
  """Loss (and learning rate) per step for every trained stage, with the diffusion stage's
  held-out loss where it was logged -> `out` (a PNG). logs: {stage: {'metrics': [row, ...],
  'heldout': [row, ...] or None}}, as store.workdir.training_logs reads them."""
  stages = [stage for stage, log in logs.items() if log['metrics']]
  if not stages:
    return None
  # A VAE trained against a discriminator gets a third panel: the two players' figures.
  adversarial = {stage for stage in stages if 'discriminator_loss' in logs[stage]['metrics'][0]}
  columns = 3 if adversarial else 2
  fig, axes = plt.subplots(len(stages), columns, figsize=(5.5 * columns, 3.4 * len(stages)),
                           squeeze=False)
  for row, stage in zip(axes, stages):
    records = logs[stage]['metrics']
    if stage in adversarial:
      _plot_adversarial(row[2], stage, records)
    elif columns == 3:
      row[2].axis('off')
    steps = [r['step'] for r in records]
    keys = ['loss'] + [k for k in ('unweighted_loss', 'recon_mae_mv', 'kl', 'retrieval_accuracy')
                       if k in records[0]]
    heldout = logs[stage]['heldout']
    predicts_v = bool(heldout) and heldout[-1].get('prediction') == 'v'
    for key in keys:
      # With diffusion.min_snr_gamma the optimised loss is weighted, with diffusion.prediction
      # 'v' it is v's error; the held-out one is always the unweighted noise error.
      label = key
      if key == 'loss' and 'unweighted_loss' in keys:
        label = 'loss (Min-SNR weighted)'
      elif key == 'loss' and predicts_v:
        label = 'loss (v-prediction error)'
      row[0].plot(steps, [r[key] for r in records], label=label)
    if heldout:  # the same loss on val and on as many training records, fixed draws
      at = [r['step'] for r in heldout]
      row[0].plot(at, [r['heldout_loss'] for r in heldout], 'o-', color='tab:red',
                  label=f'held-out noise error (val, {heldout[-1]["records"]} records)')
      row[0].plot(at, [r['train_loss'] for r in heldout], 's--', color='tab:green',
                  label='training records, same draws')
    row[0].set_yscale('log')
    row[0].set_title(f'{stage}: training loss')
    row[0].set_xlabel('step')
    row[0].legend()
    row[1].plot(steps, [r['learning_rate'] for r in records], color='tab:gray', label='lr')
    if 'kl_weight' in records[0]:
      row[1].plot(steps, [r['kl_weight'] * max(r['learning_rate'] for r in records)
                          for r in records], '--', label='KL weight (scaled)')
    row[1].set_title(f'{stage}: schedule')
    row[1].set_xlabel('step')
    row[1].legend()
  fig.tight_layout()
  out = Path(out)
  save_figure(fig, out, dpi=110)
  plt.close(fig)
  return out


def _plot_adversarial(ax, stage: str, records: list):
  steps = [r['step'] for r in records]
  for key, label in (('discriminator_loss', 'discriminator hinge loss'),
                     ('logit_real', 'mean logit, real'),
                     ('logit_reconstructed', 'mean logit, reconstructed'),
                     ('adversarial_scale', 'adversarial term\'s weight (adaptive x set)')):
    ax.plot(steps, [r[key] for r in records], label=label)
  ax.axhline(0.0, color='tab:gray', lw=0.5)
  ax.set_title(f'{stage}: against the patch discriminator')
  ax.set_xlabel('step')
  ax.legend(fontsize=8)


def _paper_grid(ax, width_mm, height_mm):
  ax.set_xlim(0, width_mm)
  ax.set_ylim(0, height_mm)
  for x in np.arange(0, width_mm + 0.01, 1.0):
    ax.axvline(x, color='#f6c8c8' if x % 5 else '#e88a8a', lw=0.3 if x % 5 else 0.6, zorder=0)
  for y in np.arange(0, height_mm + 0.01, 1.0):
    ax.axhline(y, color='#f6c8c8' if y % 5 else '#e88a8a', lw=0.3 if y % 5 else 0.6, zorder=0)
  ax.set_xticks([])
  ax.set_yticks([])


def _calibration_pulse(ax, x0, baseline):
  # 1 mV high, 0.2 s wide
  xs = np.array([0, 2, 2, 7, 7, 9]) + x0
  ys = baseline + np.array([0, 0, GAIN_MM_MV, GAIN_MM_MV, 0, 0])
  ax.plot(xs, ys, color='black', lw=0.8)


def plot_ecg(ecg: np.ndarray, fs: float, path, title: str = '') -> Path:
  """12-lead ECG (length, 12) in mV, standard lead order -> PNG on standard paper.

  3 x 4 layout of 2.5 s columns plus a 10 s lead-II rhythm strip, 25 mm/s, 10 mm/mV, 1 mm and
  5 mm grid, 1 mV calibration pulses, lead labels; drawn at true scale.
  """
  ecg = np.asarray(ecg, np.float64)
  if ecg.ndim != 2 or ecg.shape[1] != 12:
    raise ValueError(f'expected an ECG of shape (length, 12), got {ecg.shape}')
  duration = ecg.shape[0] / fs
  pulse_mm, row_mm = 10.0, 30.0
  width = pulse_mm + duration * PAPER_SPEED_MM_S
  height = row_mm * 4 + 5
  fig = plt.figure(figsize=(width / MM_PER_INCH, (height + 12) / MM_PER_INCH))
  ax = fig.add_axes((0, 0, 1, height / (height + 12)))
  _paper_grid(ax, width, height)
  t_mm = np.arange(ecg.shape[0]) / fs * PAPER_SPEED_MM_S
  column_s = duration / 4
  index = {name: i for i, name in enumerate(STANDARD_LEADS)}
  for row, leads in enumerate(LAYOUT):
    baseline = height - row_mm * (row + 0.5) - 2.5
    _calibration_pulse(ax, 0.5, baseline)
    for col, lead in enumerate(leads):
      sl = slice(int(round(col * column_s * fs)), int(round((col + 1) * column_s * fs)))
      ax.plot(pulse_mm + t_mm[sl], baseline + ecg[sl, index[lead]] * GAIN_MM_MV, color='black',
              lw=0.7)
      ax.text(pulse_mm + col * column_s * PAPER_SPEED_MM_S + 1, baseline + 8, lead, fontsize=8)
      if col:
        x = pulse_mm + col * column_s * PAPER_SPEED_MM_S
        ax.plot([x, x], [baseline - 3, baseline + 3], color='black', lw=0.8)
  baseline = row_mm * 0.5 + 2.5
  _calibration_pulse(ax, 0.5, baseline)
  ax.plot(pulse_mm + t_mm, baseline + ecg[:, index['II']] * GAIN_MM_MV, color='black', lw=0.7)
  ax.text(pulse_mm + 1, baseline + 8, 'II', fontsize=8)
  fig.suptitle(title + f'\n25 mm/s, 10 mm/mV, {fs:g} Hz', fontsize=9, y=0.995)
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  save_figure(fig, path, dpi=150)
  plt.close(fig)
  return path
