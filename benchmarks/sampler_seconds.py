"""Seconds to generate 4 ECGs with a trained model, per sampler, through the program sample.py
runs (`Generator.compiled_sampler`: the sampler's `lax.scan` with guidance inside, then the VAE
decode). The model card's sampler table reads its time column from here.

  python benchmarks/sampler_seconds.py --out benchmarks/results/sampler_seconds_cpu.json
  python benchmarks/sampler_seconds.py --model runs/my_workdir --samplers ddim:50:0 dpmpp:50

Each --samplers entry is SAMPLER:STEPS[:DDIM_ETA] ('default': the model's own sampler). Compile
time is reported apart; a warm-up call, then the median of --repeats calls, each ended by
`block_until_ready`. Writes JSON with the device, versions and command.
"""
import argparse
import sys
import time

import numpy as np
import jax

from diffusets_jax.generate import Generator
import environment  # benchmarks/environment.py, beside this script


def parse_sampler(text: str) -> dict:
  """'ddim:50:0' -> dict(sampler='ddim', steps=50, ddim_eta=0.0); 'default' -> {}."""
  if text == 'default':
    return {}
  parts = text.split(':')
  if not 2 <= len(parts) <= 3:
    raise argparse.ArgumentTypeError(f'expected SAMPLER:STEPS[:DDIM_ETA] or default, got {text!r}')
  out = dict(sampler=parts[0], steps=int(parts[1]))
  if len(parts) == 3:
    out['ddim_eta'] = float(parts[2])
  return out


def time_sampler(generator: Generator, options: dict, num: int, repeats: int) -> dict:
  settings = generator.settings(options.get('sampler'), options.get('steps'),
                                options.get('ddim_eta'))
  cond = generator.conditions([['Sinus rhythm']] * num, [50.0] * num, ['F'] * num, [70.0] * num)
  start = time.perf_counter()
  sample = generator.compiled_sampler(num, settings)
  compile_s = time.perf_counter() - start
  rng = jax.random.PRNGKey(0)
  jax.block_until_ready(sample(cond, rng))  # warm-up
  times = []
  for repeat in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(sample(cond, jax.random.PRNGKey(repeat + 1)))
    times.append(time.perf_counter() - start)
  return dict(sampler=settings.sampler, steps=settings.unet_steps(
      generator.config.diffusion.num_timesteps), ddim_eta=settings.ddim_eta, num=num,
      unet_evaluations=settings.unet_evaluations(generator.config.diffusion.num_timesteps),
      **settings.guidance(),
      compile_s=round(compile_s, 2),
      median_s=round(float(np.median(times)), 3), min_s=round(float(np.min(times)), 3),
      repeats=repeats)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model', default='pretrained',
                      help="'pretrained' (default), an exported folder or a workdir")
  parser.add_argument('--samplers', nargs='+', type=parse_sampler,
                      default=[{}, parse_sampler('ddim:50:0'), parse_sampler('dpmpp:50')],
                      help="SAMPLER:STEPS[:DDIM_ETA] or 'default' (default: default ddim:50:0 "
                           "dpmpp:50)")
  parser.add_argument('--num', type=int, default=4, help='ECGs per call (default 4)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', required=True, help='JSON file to write')
  args = parser.parse_args(argv)
  generator = Generator.open(args.model)
  results = [time_sampler(generator, options, args.num, args.repeats)
             for options in args.samplers]
  report = dict(environment.describe(), benchmark='seconds per call of num ECGs, by sampler',
                model=args.model, command='python ' + ' '.join(sys.argv), results=results)
  environment.write_report(report, args.out)
  for row in results:
    print(f"{row['sampler']:>6} {row['steps']:>5} steps  eta {row['ddim_eta']:<4g} "
          f"compile {row['compile_s']:6.1f} s  {row['num']} ECGs {row['median_s']:7.3f} s")


if __name__ == '__main__':
  main()
