"""Classifier two-sample tests of a model without its CLIP model: evaluate.py's C2ST section
alone (generated ECGs and the VAE's reconstructions against real held-out ECGs, 12 leads and
lead II, each beside the real-vs-real floor), with the time and pauses of the sampler used.

  python scripts/two_sample_check.py --split test --dataset ptbxl --out runs/c2st_shipped.json
  python scripts/two_sample_check.py --workdir runs/W --sampler ddim --steps 50 --ddim_eta 0 \
      --split val --out runs/W/c2st_val.json

The records, halves and seeds are evaluate.py's (evaluation/evaluator.py), so the figures agree
with its metrics.json for the same settings.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from diffusets_jax.datasets import heart_rate
from diffusets_jax.evaluation import evaluator
from diffusets_jax.generate import Generator


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--workdir', default=None, help='trained model (default: the shipped one)')
  parser.add_argument('--split', default='test')
  parser.add_argument('--dataset', default=None, help='one dataset of several (e.g. ptbxl)')
  parser.add_argument('--num', type=int, default=0, help='records (0: the whole split)')
  parser.add_argument('--sampler', default=None)
  parser.add_argument('--steps', type=int, default=None)
  parser.add_argument('--ddim_eta', type=float, default=None)
  parser.add_argument('--guidance_scale', type=float, default=None)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', required=True, help='JSON file to write')
  args = parser.parse_args()
  generator = Generator.open(args.workdir or 'pretrained')
  settings = generator.settings(args.sampler, args.steps, args.ddim_eta, args.guidance_scale)
  real, cond, requested = evaluator.chosen_records(generator, args.split, args.num, args.seed,
                                                   args.dataset)
  start = time.time()
  generated = generator.generate_from_conditions(
      cond, seed=args.seed, batch_size=generator.config.evaluation.batch_size,
      progress=f'generate {args.split}', **settings.as_kwargs())
  generate_s = time.time() - start
  _, reconstructed = evaluator.vae_reconstruction(generator.codec, real)
  start = time.time()
  tests = evaluator.two_sample_tests(real, generated, reconstructed,
                                     generator.config.evaluation, args.seed)
  result = dict(model=args.workdir or 'pretrained', split=args.split, dataset=args.dataset,
                records=len(real), seed=args.seed, sampling=settings.as_kwargs(),
                unet_evaluations_per_ecg=settings.unet_steps(
                    generator.config.diffusion.num_timesteps),
                generate_s=round(generate_s, 1), two_sample_s=round(time.time() - start, 1),
                pauses=dict(generated=heart_rate.pause_share(heart_rate.longest_rr_ratio(
                    generated)), real=heart_rate.pause_share(heart_rate.longest_rr_ratio(real))),
                heart_rate_mae_bpm=evaluator.heart_rate_error(
                    heart_rate.heart_rate(generated), requested)[0],
                two_sample=tests, command=' '.join(['python'] + sys.argv))
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(evaluator.json_ready(result), indent=1))
  for name, value in tests.items():
    if isinstance(value, dict):
      print(f'{name:<24} {value["generated"]:.3f}  (real A vs real B: {value["real"]:.3f}, '
            f'{tests["per_class"]} per set)')
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
