"""The evaluation report: report.md with the metric tables, and its figures (PNG).

Figures: real vs generated ECGs for the same conditions, the heart-rate sweep, and a 2-D
projection (PCA fitted on the real features) of the CLIP ECG features.
"""
import math
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffusets_jax.datasets import heart_rate as hr_detector  # noqa: E402
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ, STANDARD_LEADS  # noqa: E402
from diffusets_jax.io import plots  # noqa: E402

# (section, key, label, what 'real' means for it, which direction is better)
ROWS = (
    ('signal', 'mae_mv', 'signal MAE (mV)', 'real A vs real B (different records)', 'lower'),
    ('feature', 'heart_rate_mae_bpm', 'heart-rate MAE (bpm)', 'measured on the real ECG vs its '
     'recorded rate', 'lower'),
    ('feature', 'heart_rate_unmeasured', 'ECGs with no measurable rate', 'real ECGs', 'lower'),
    ('feature', 'rhythm_pauses', 'ECGs with a pause (RR > 1.5 x median RR)', 'real ECGs',
     'lower'),
    ('feature', 'heart_rate_mae_bpm_xqrs', 'heart-rate MAE (bpm), second detector (XQRS, lead '
     'II)', 'measured on the real ECG vs its recorded rate', 'lower'),
    ('feature', 'rhythm_pauses_xqrs', 'ECGs with a pause, second detector (XQRS, lead II)',
     'real ECGs', 'lower'),
    ('diagnostic', 'fid', 'FID (paper: all generated vs all real)', 'real A vs real B', 'lower'),
    ('diagnostic', 'fid_halves', 'FID (generated A vs real B)', 'real A vs real B', 'lower'),
    ('diagnostic', 'rfid', 'rFID = FID / FID(real A, real B)', 'by definition', 'lower'),
    ('diagnostic', 'clip_score', 'CLIP score (matched text)', 'real ECGs', 'higher'),
    ('diagnostic', 'clip_score_shuffled', 'CLIP score (shuffled text, chance)', 'real ECGs',
     'lower'),
    ('diagnostic', 'rclip', 'rCLIP = CLIP score / real CLIP score', 'by definition', 'higher'),
    ('diagnostic', 'precision', 'precision (k-NN, generated A vs real B)', 'real A vs real B',
     'higher'),
    ('diagnostic', 'recall', 'recall (k-NN, generated A vs real B)', 'real A vs real B',
     'higher'),
    ('two_sample', 'generated_12_leads', 'C2ST accuracy, generated A vs real B (12 leads)',
     'real A vs real B (the floor)', 'lower (0.5: chance)'),
    ('two_sample', 'generated_lead_ii', 'C2ST accuracy, generated A vs real B (lead II)',
     'real A vs real B (the floor)', 'lower (0.5: chance)'),
    ('two_sample', 'reconstructed_12_leads', 'C2ST accuracy, VAE reconstructions vs their '
     'originals (12 leads)', 'real A vs real B (the floor)', 'lower (0.5: chance)'),
    ('two_sample', 'reconstructed_lead_ii', 'C2ST accuracy, VAE reconstructions vs their '
     'originals (lead II)', 'real A vs real B (the floor)', 'lower (0.5: chance)'),
)


def fmt(value) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'n/a'
  return f'{value:.4g}'


def plot_pairs(real, generated, titles, path, fs: float = SAMPLE_RATE_HZ,
               label: str = 'generated') -> Path:
  """One panel per record: its 12 leads stacked, real (black) and `label` (red) overlaid."""
  count = len(real)
  cols = min(2, count)
  rows = math.ceil(count / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(8 * cols, 9 * rows), squeeze=False)
  t = np.arange(real.shape[1]) / fs
  spacing = 2.5  # mV between stacked leads
  for ax, r, g, title in zip(axes.flat, real, generated, titles):
    for lead, name in enumerate(STANDARD_LEADS):
      offset = -spacing * lead
      ax.plot(t, r[:, lead] + offset, color='black', lw=0.6)
      ax.plot(t, g[:, lead] + offset, color='tab:red', lw=0.6, alpha=0.8)
      ax.text(-0.15, offset, name, ha='right', va='center', fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel('time (s)')
    ax.set_title(title, fontsize=8, wrap=True)
  for ax in list(axes.flat)[count:]:
    ax.axis('off')
  fig.legend(handles=[plt.Line2D([], [], color='black', label='real'),
                      plt.Line2D([], [], color='tab:red', label=label)], loc='upper right')
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=90)
  plt.close(fig)
  return Path(path)


def plot_sweep(sweep: dict, path) -> Path:
  """Measured vs requested heart rate, mean +- sd per requested rate, identity line."""
  rows = sweep['rows']
  requested = np.array([r['requested'] for r in rows])
  fig, ax = plt.subplots(figsize=(5.5, 5))
  ax.plot(requested, requested, '--', color='tab:gray', label='measured = requested')
  ax.errorbar(requested, [r['mean'] for r in rows], yerr=[r['sd'] for r in rows], fmt='o-',
              capsize=3, label='generated: mean +- sd')
  ax.scatter(sweep['requested'], sweep['measured_hr'], s=6, color='tab:blue', alpha=0.3)
  ax.set_xlabel('requested heart rate (bpm)')
  ax.set_ylabel('measured heart rate (bpm)')
  if sweep.get('reports') == 'consistent':
    for low, high in ((requested.min() - 5, hr_detector.BRADYCARDIA_BELOW_BPM - 0.5),
                      (hr_detector.TACHYCARDIA_ABOVE_BPM + 0.5, requested.max() + 5)):
      ax.axvspan(low, high, color='tab:orange', alpha=0.08)
  asked = ('reports by rate: sinus bradycardia, rhythm, tachycardia'
           if sweep.get('reports') == 'consistent' else f'"{sweep["report"]}"')
  ax.set_title(f'{asked}, age {sweep["age"]:g}, sex {sweep["sex"]}', fontsize=9)
  ax.legend()
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=110)
  plt.close(fig)
  return Path(path)


def pca_projection(reference, *others) -> list[np.ndarray]:
  """Projects every set on the first two principal axes of `reference` (its mean removed)."""
  mean = reference.mean(axis=0)
  _, _, axes = np.linalg.svd(reference - mean, full_matrices=False)
  return [(x - mean) @ axes[:2].T for x in (reference,) + others]


def plot_features(real_features, generated_features, path) -> Path:
  real_2d, generated_2d = pca_projection(real_features, generated_features)
  fig, ax = plt.subplots(figsize=(5.5, 5))
  ax.scatter(*real_2d.T, s=14, color='black', alpha=0.6, label='real')
  ax.scatter(*generated_2d.T, s=14, color='tab:red', alpha=0.6, label='generated')
  ax.set_xlabel('PC 1 of the real features')
  ax.set_ylabel('PC 2 of the real features')
  ax.set_title('CLIP ECG features (64-d), PCA', fontsize=9)
  ax.legend()
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=110)
  plt.close(fig)
  return Path(path)


def markdown(summary: dict, figures: dict) -> str:
  eta = f', eta {summary["ddim_eta"]:g}' if summary.get('ddim_eta') else ''
  lines = [f'# Evaluation of {summary["workdir"]}', '',
           f'{summary["num"]} records of the {summary["split"]} split of '
           f'{summary.get("dataset", "?")}; sampler {summary["sampler"]} ({summary["steps"]} '
           f'steps{eta}), guidance scale {summary.get("guidance_scale", 1.0):g}, seed '
           f'{summary["seed"]}; text: {summary["text"]}; CLIP model: {summary["clip_workdir"]}.',
           '']
  if 'unet_evaluations_per_ecg' in summary:
    lines += [f'Cost: {summary["unet_evaluations_per_ecg"]} U-Net evaluations per ECG (a guided '
              f'step\'s pair counted once), {summary["seconds"]["generate_per_ecg_s"]:.2f} s of '
              f'generation per ECG on {summary.get("devices", 1)} device(s), compilation '
              f'included.', '']
  lines += [
           '"real" is the same metric with real ECGs in place of the generated ones; set-to-set '
           'metrics compare two random halves A and B of the real records (generated A: the ECGs '
           'generated for the conditions of half A).', '',
           '| metric | generated | real | real means | better |', '|---|---|---|---|---|']
  for section, key, label, meaning, better in ROWS:
    if section not in summary:  # e.g. two-sample tests not run
      continue
    value = summary[section][key]
    lines.append(f'| {label} | {fmt(value["generated"])} | {fmt(value["real"])} | {meaning} '
                 f'| {better} |')
  lines += ['', f'A flat line (all zeros) has signal MAE '
            f'{fmt(summary["signal"]["flat_line_mae_mv"])} mV: MAE rewards smooth, low-amplitude '
            f'ECGs, so read it with the other metrics.']
  unmeasured = summary['feature']['heart_rate_unmeasured']['generated']
  lines += ['', f'Generated ECGs with a measurable heart rate: '
            f'{100 * (1 - unmeasured / summary["num"]):.0f} %.']
  vae = summary['vae']
  lines += ['', '## VAE reconstruction (stage 1)', '',
            'Each real ECG encoded (posterior mean) and decoded.', '',
            '| reconstruction MAE (mV) | flat line at the lead means (mV) | ratio | '
            'heart rate kept within 3 bpm |', '|---|---|---|---|',
            f'| {fmt(vae["mae_mv"])} | {fmt(vae["flat_line_mae_mv"])} | '
            f'{fmt(vae["mae_over_flat_line"])} | {100 * vae["heart_rate_within_3bpm"]:.0f} % '
            f'of {vae["heart_rate_compared"]} |']
  lines += ['', 'Where the error lies in frequency (RMS; the real ECGs with their lead means '
            'removed, as the flat line has them):', '',
            '| band (Hz) | error RMS (mV) | real RMS (mV) | share of squared error |',
            '|---|---|---|---|']
  for band in vae['error_by_band']:
    lines.append(f'| {band["low_hz"]:g}-{band["high_hz"]:g} | {fmt(band["error_rms_mv"])} | '
                 f'{fmt(band["real_rms_mv"])} | '
                 f'{100 * band["share_of_squared_error"]:.0f} % |')
  lines += ['', '## Lead consistency (Einthoven, Goldberger)', '',
            'RMS residual of each relation, in mV and relative to the RMS limb-lead amplitude.',
            '', '| relation | generated (mV) | real (mV) | generated (rel.) | real (rel.) |',
            '|---|---|---|---|---|']
  for relation, value in summary['lead_consistency'].items():
    lines.append(f'| {relation} | {fmt(value["rms_mv"]["generated"])} | '
                 f'{fmt(value["rms_mv"]["real"])} | {fmt(value["relative"]["generated"])} | '
                 f'{fmt(value["relative"]["real"])} |')
  sweep = summary.get('heart_rate_sweep')
  if sweep:
    pauses = (f'; ECGs with a pause {100 * sweep["pauses"]:.0f} %' if 'pauses' in sweep else '')
    if 'mae_bpm_xqrs' in sweep:
      pauses += (f'; second detector (XQRS, lead II): MAE {fmt(sweep["mae_bpm_xqrs"])} bpm, '
                 f'pauses {100 * sweep["pauses_xqrs"]:.0f} %')
    lines += ['', '## Heart-rate sweep', '',
              f'Reports {sweep.get("reports", "single")}: "{sweep["report"]}", age '
              f'{sweep["age"]:g}, sex {sweep["sex"]}; MAE {fmt(sweep["mae_bpm"])} bpm; '
              f'{sweep["unmeasured"]} ECG(s) with no measurable rate{pauses}.', '',
              '| requested (bpm) | report | measured mean | sd | measured / samples | pauses |',
              '|---|---|---|---|---|---|']
    for row in sweep['rows']:
      row_pauses = f'{100 * row["pauses"]:.0f} %' if 'pauses' in row else ''
      lines.append(f'| {row["requested"]:g} | {row.get("report", sweep["report"])} | '
                   f'{fmt(row["mean"])} | {fmt(row["sd"])} | '
                   f'{row["measured"]} / {row["samples"]} | {row_pauses} |')
  lines += ['', '## Figures', '']
  for title, name in figures.items():
    lines += [f'### {title}', '', f'![{title}]({name})', '']
  seconds = ', '.join(f'{k} {v:.1f}' for k, v in summary['seconds'].items())
  lines += [f'Seconds: {seconds}.', '']
  return '\n'.join(lines)


def write(folder, summary, real_ecg, generated, details, record_ids, reports, sweep,
          grid_records: int, reconstructed) -> Path:
  """Writes the figures and report.md into `folder`; returns the report's path.
  reconstructed: the VAE's reconstructions of real_ecg, drawn over the same records."""
  folder = Path(folder)
  count = min(grid_records, len(real_ecg))
  titles = [f'record {record_ids[i]}: ' + '; '.join(reports[i])[:120] for i in range(count)]
  figures = {'Real vs generated ECGs, same conditions': plot_pairs(
      real_ecg[:count], generated[:count], titles, folder / 'real_vs_generated.png').name}
  figures['Real ECGs and their VAE reconstructions'] = plot_pairs(
      real_ecg[:count], reconstructed[:count], titles, folder / 'vae_reconstruction.png',
      label='VAE reconstruction').name
  if sweep is not None:
    figures['Heart-rate sweep'] = plot_sweep(sweep, folder / 'heart_rate_sweep.png').name
  figures['CLIP feature space'] = plot_features(details['real_features'],
                                                details['generated_features'],
                                                folder / 'feature_space.png').name
  path = folder / 'report.md'
  path.write_text(markdown(summary, figures))
  return path
