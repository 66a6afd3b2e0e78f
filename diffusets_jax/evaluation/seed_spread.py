"""How far the sampling seed alone moves evaluate.py's figures: runs that differ only in their
seed, each metric's values, mean, sd, min and max (scripts/seed_spread.py is the command)."""
import json
from pathlib import Path

import numpy as np

from diffusets_jax.diffusion import sampling_settings

# Fields that must be equal across the runs for the spread to be the seed's alone.
SAME = ('workdir', 'clip_workdir', 'split', 'dataset', 'num', 'sampler', 'steps', 'ddim_eta',
        *sampling_settings.GUIDANCE_FIELDS, 'precision', 'text')
# Values of fields that runs of earlier versions do not record.
# Guidance on every step, classifier-free.
BEFORE_RECORDED = dict(guidance_min_step=0, autoguidance_scale=1.0, guidance_dropout=0.3,
                       autoguidance_min_step=0)

ROWS = (  # (label, path in metrics.json; a 'generated'/'real' pair unless it ends in a number)
    ('heart-rate MAE (bpm)', ('feature', 'heart_rate_mae_bpm')),
    ('no measurable heart rate', ('feature', 'heart_rate_unmeasured')),
    ('ECGs with a pause', ('feature', 'rhythm_pauses')),
    ('heart-rate sweep MAE (bpm)', ('heart_rate_sweep', 'mae_bpm')),
    ('heart-rate MAE, second detector (bpm)', ('feature', 'heart_rate_mae_bpm_xqrs')),
    ('ECGs with a pause, second detector', ('feature', 'rhythm_pauses_xqrs')),
    ('heart-rate sweep MAE, second detector (bpm)', ('heart_rate_sweep', 'mae_bpm_xqrs')),
    ('precision (k = 3)', ('diagnostic', 'precision')),
    ('recall (k = 3)', ('diagnostic', 'recall')),
    ('FID', ('diagnostic', 'fid')),
    ('rFID', ('diagnostic', 'rfid')),
    ('CLIP score', ('diagnostic', 'clip_score')),
    ('CLIP score, shuffled text', ('diagnostic', 'clip_score_shuffled')),
    ('signal MAE (mV)', ('signal', 'mae_mv')),
)


def load(path) -> dict:
  path = Path(path)
  path = path / 'metrics.json' if path.is_dir() else path
  if not path.is_file():
    raise FileNotFoundError(f'{path} not found: give evaluation folders (evaluate.py --out) or '
                            f'their metrics.json')
  metrics = {**BEFORE_RECORDED, **json.loads(path.read_text())}
  # Earlier versions' ddim was deterministic; ddpm has no eta.
  metrics.setdefault('ddim_eta', 0.0 if metrics.get('sampler') == 'ddim' else None)
  # Settings of a guidance that is off change nothing, so runs may differ in them.
  if metrics['guidance_scale'] == 1.0:
    metrics['guidance_min_step'] = None
  if metrics['autoguidance_scale'] == 1.0:
    metrics['guidance_dropout'] = metrics['autoguidance_min_step'] = None
  return metrics


def lookup(metrics: dict, keys) -> dict | None:
  """{'generated': x, 'real': y or None} at `keys`, or None where the run lacks it (e.g. a run
  with --nosweep)."""
  value = metrics
  for key in keys:
    if not isinstance(value, dict) or value.get(key) is None:
      return None
    value = value[key]
  if isinstance(value, dict):
    return dict(generated=value['generated'], real=value.get('real'))
  return dict(generated=value, real=None)


def summary(values) -> dict:
  values = np.asarray(values, np.float64)
  return dict(values=values.tolist(), mean=float(values.mean()),
              sd=float(values.std(ddof=1)) if len(values) > 1 else float('nan'),
              min=float(values.min()), max=float(values.max()))


def spread(runs: list[dict], names: list[str]) -> dict:
  """Per metric, the generated (and where it varies, the real) values over the runs."""
  if len(runs) < 2:
    raise ValueError(f'the spread needs at least two runs, got {len(runs)}')
  for field in SAME:
    values = {json.dumps(run.get(field)) for run in runs}
    if len(values) > 1:
      raise ValueError(f'the runs differ in {field!r} ({", ".join(sorted(values))}), not only in '
                       f'the seed; compare runs of one setting')
  seeds = [run.get('seed') for run in runs]
  if len(set(seeds)) < len(seeds):
    raise ValueError(f'two runs have the same seed ({seeds}): the spread needs distinct seeds')
  rows = []
  for label, keys in ROWS:
    found = [lookup(run, keys) for run in runs]
    if any(f is None for f in found):
      continue
    row = dict(metric=label, generated=summary([f['generated'] for f in found]))
    if all(f['real'] is not None for f in found):
      row['real'] = summary([f['real'] for f in found])
    rows.append(row)
  return dict(runs=names, seeds=seeds, **{field: runs[0].get(field) for field in SAME},
              rows=rows)


def number(value: float) -> str:
  return '0' if abs(value) < 5e-4 else f'{value:.3g}'  # the real rate's MAE is ~1e-6


def autoguidance(result: dict) -> str:
  if result.get('autoguidance_scale') in (None, 1.0):
    return ''
  interval = (f' on t >= {result["autoguidance_min_step"]}' if result['autoguidance_min_step']
              else '')
  return (f', autoguidance {result["autoguidance_scale"]:g} (dropout '
          f'{result["guidance_dropout"]:g}){interval}')


def markdown(result: dict) -> str:
  seeds = result['seeds']
  lines = [f'{result["workdir"]} on {result["dataset"]} {result["split"]} ({result["num"]} '
           f'records), {result["sampler"]} {result["steps"]}, guidance '
           f'{result["guidance_scale"]:g}{autoguidance(result)}; seeds '
           f'{", ".join(map(str, seeds))}', '',
           '| metric | ' + ' | '.join(f'seed {s}' for s in seeds)
           + ' | mean | sd | min - max | real (mean over the seeds) |',
           '|---|' + '---|' * (len(seeds) + 4)]
  for row in result['rows']:
    g = row['generated']
    real = row.get('real')
    real_text = '' if real is None else number(real['mean'])
    if real is not None and real['max'] > real['min'] + 5e-4:
      real_text += f' ({number(real["min"])} - {number(real["max"])})'
    lines.append(f'| {row["metric"]} | ' + ' | '.join(number(v) for v in g['values'])
                 + f' | {number(g["mean"])} | {g["sd"]:.2g} | {number(g["min"])} - '
                 f'{number(g["max"])} | {real_text} |')
  return '\n'.join(lines) + '\n'
