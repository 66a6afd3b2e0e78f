"""Times the paper-size U-Net denoising loop (the samplers' `lax.scan`), per denoising step.

Random paper-size parameters (text dim 1536); the loop is the DDIM sampler's scan over
--steps steps (each step is one U-Net evaluation plus an elementwise update, as in DDPM), without
the VAE decode. Compile time is reported apart; each repeat ends with `block_until_ready`; the
per-step figure is the median repeat divided by the number of steps.

  python benchmarks/sampling.py --batch 1 16 64 --out benchmarks/results/sampling_cpu.json
"""
import argparse
import json
import time

import numpy as np
import jax

from diffusets_jax.diffusion import samplers
from diffusets_jax.diffusion.schedule import linear_schedule
from diffusets_jax.models import factory
import environment  # benchmarks/environment.py, beside this script


def time_loop(batch: int, steps: int, repeats: int, config, params) -> dict:
  unet = factory.make_unet(config)
  schedule = linear_schedule()
  shape = (batch,) + factory.latent_shape(config)

  @jax.jit
  def loop(params, cond, rng):
    eps_fn = lambda z, t, c: unet.apply({'params': params}, z, t, c)
    _, z0 = samplers.ddim_sample(eps_fn, lambda z: z, schedule, cond, shape, rng, steps)
    return z0

  cond = jax.random.normal(jax.random.PRNGKey(1), (batch, factory.condition_dim(config)))
  rng = jax.random.PRNGKey(2)
  start = time.perf_counter()
  compiled = loop.lower(params, cond, rng).compile()
  compile_s = time.perf_counter() - start
  compiled(params, cond, rng).block_until_ready()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    compiled(params, cond, rng).block_until_ready()
    times.append(time.perf_counter() - start)
  return dict(batch=batch, steps=steps, repeats=repeats, compile_s=round(compile_s, 2),
              median_loop_s=round(float(np.median(times)), 4),
              ms_per_step=round(1000 * float(np.median(times)) / steps, 3),
              min_ms_per_step=round(1000 * float(np.min(times)) / steps, 3))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, nargs='+', default=[1, 16, 64])
  parser.add_argument('--steps', type=int, default=50, help='denoising steps per timed loop')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--size', default='paper', choices=environment.SIZES,
                      help='paper: the reference U-Net; micro: a tiny one (a CPU check)')
  parser.add_argument('--out', default='benchmarks/results/sampling.json')
  args = parser.parse_args()
  config = environment.benchmark_config(args.size)
  params = factory.init_unet(config, jax.random.PRNGKey(0))
  print(f'U-Net: {factory.count_params(params):,} parameters on {jax.devices()[0].device_kind}')
  results = []
  for batch in args.batch:
    result = time_loop(batch, args.steps, args.repeats, config, params)
    print(json.dumps(result))
    results.append(result)
  report = dict(
      benchmark='paper-size U-Net denoising loop (lax.scan), ms per step',
      **environment.describe(),
      command=' '.join(['python', 'benchmarks/sampling.py'] + [
          f'--batch {" ".join(map(str, args.batch))}', f'--steps {args.steps}',
          f'--repeats {args.repeats}', f'--size {args.size}', f'--out {args.out}']),
      results=results)
  environment.write_report(report, args.out)


if __name__ == '__main__':
  main()
