"""Classifier-free guidance sweep: evaluate.py's protocol at several guidance scales, one table.

  python scripts/guidance_sweep.py --workdir runs/pretrained --split val --scales 1 2 3 5 \
      --out runs/pretrained/evaluation/guidance_sweep
  python scripts/guidance_sweep.py --clip_workdir runs/clip --split val --scales 2 3 4 \
      --out runs/shipped_guidance_sweep          # the shipped model (no --workdir)

Chooses on a split other than the test split (val by default), so the chosen default is not
fitted to the figures reported on test. Writes sweep.json and sweep.md to --out, and each
scale's full evaluation under --out/scale_S/.
"""
import argparse
import json
from pathlib import Path

from diffusets_jax.evaluation import evaluator

COLUMNS = (  # (label, path in metrics.json, 'generated' value)
    ('HR MAE (bpm)', ('feature', 'heart_rate_mae_bpm')),
    ('precision', ('diagnostic', 'precision')),
    ('recall', ('diagnostic', 'recall')),
    ('rFID', ('diagnostic', 'rfid')),
    ('CLIP score', ('diagnostic', 'clip_score')),
    ('CLIP shuffled', ('diagnostic', 'clip_score_shuffled')),
    ('signal MAE (mV)', ('signal', 'mae_mv')),
)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', default=None,
                      help='a trained workdir; omitted: the shipped pretrained model')
  parser.add_argument('--clip_workdir', default=None,
                      help='workdir of the CLIP model that scores (default: --workdir; needed '
                      'for the shipped model)')
  parser.add_argument('--split', default='val')
  parser.add_argument('--scales', type=float, nargs='+', default=[1.0, 2.0, 3.0, 5.0])
  parser.add_argument('--sampler', default=None, help='default: the config\'s')
  parser.add_argument('--steps', type=int, default=None)
  parser.add_argument('--ddim_eta', type=float, default=None,
                      help='DDIM\'s noise per step: 0 deterministic, 1 the DDPM posterior\'s '
                      '(default: the model\'s sampling.ddim_eta)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--guidance_min_step', type=int, default=None,
                      help='guide only the steps t >= this (default: the model\'s '
                      'sampling.guidance_min_step, 0 for the shipped model: every step)')
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  if args.workdir is None and args.clip_workdir is None:
    parser.error('the shipped model (no --workdir) needs --clip_workdir, a workdir with a '
                 'trained clip stage (train.py --stage clip)')
  out = Path(args.out)
  rows = []
  for scale in args.scales:
    folder = evaluator.evaluate(args.workdir, args.split, clip_workdir=args.clip_workdir,
                                sampler=args.sampler, steps=args.steps,
                                seed=args.seed, out=out / f'scale_{scale:g}',
                                guidance_scale=scale,
                                guidance_min_step=args.guidance_min_step,
                                ddim_eta=args.ddim_eta)
    metrics = json.loads((folder / 'metrics.json').read_text())
    row = dict(scale=scale, sweep_mae_bpm=metrics['heart_rate_sweep']['mae_bpm'],
               unmeasured=metrics['feature']['heart_rate_unmeasured']['generated'],
               num=metrics['num'])
    for label, (section, key) in COLUMNS:
      row[label] = metrics[section][key]['generated']
    rows.append(row)
    print(json.dumps(row), flush=True)
  (out / 'sweep.json').write_text(json.dumps(rows, indent=1))
  header = ['guidance scale'] + [label for label, _ in COLUMNS] + ['sweep MAE (bpm)',
                                                                   'no measurable HR']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row in rows:
    values = [f'{row["scale"]:g}'] + [f'{row[label]:.3g}' for label, _ in COLUMNS] + [
        f'{row["sweep_mae_bpm"]:.3g}', f'{row["unmeasured"]:.0f} / {row["num"]}']
    lines.append('| ' + ' | '.join(values) + ' |')
  (out / 'sweep.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  print(f'wrote {out / "sweep.json"}, {out / "sweep.md"}')


if __name__ == '__main__':
  main()
