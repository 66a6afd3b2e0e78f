"""Time of the evaluation metrics for N generated ECGs (generation excluded), and throughput of
the heart-rate detector, on this machine.

`evaluator.score` is timed whole: CLIP features of the N real and N generated ECGs (paper-size
ResNet1d-18, configs/default.py), the text features, signal MAE, heart rate measured on both
sets, FID twice, CLIP scores, precision/recall and the lead residuals. The ECGs are LUDB
training ECGs tiled to N, each circularly shifted by a random amount, and the "generated" set is
another such draw plus 0.05 mV noise; the CLIP weights are random (the time does not depend on
them). The first call compiles (first_call_s); then the median of --repeats calls.

  python benchmarks/evaluation.py --num 1000 --out benchmarks/results/evaluation_cpu.json
"""
import argparse
import json
import time

import numpy as np
import jax

from diffusets_jax import config_schema
from diffusets_jax.conditioning import text_encoders
from diffusets_jax.datasets import heart_rate, input_pipeline
from diffusets_jax.evaluation import evaluator
from diffusets_jax.evaluation.clip_features import ClipFeatures
from diffusets_jax.models import factory
import environment  # benchmarks/environment.py, beside this script


def shifted_copies(ecg: np.ndarray, num: int, rng) -> np.ndarray:
  index = rng.integers(0, len(ecg), num)
  shifts = rng.integers(0, ecg.shape[1], num)
  return np.stack([np.roll(ecg[i], s, axis=0) for i, s in zip(index, shifts)]).astype(np.float32)


def median_time(fn, repeats: int) -> tuple[float, float]:
  """(first call seconds, median of `repeats` further calls)."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num', type=int, default=1000, help='generated (and real) ECGs')
  parser.add_argument('--hr_batch', type=int, nargs='+', default=[1000, 5000],
                      help='batch sizes of the heart-rate detector benchmark')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--size', default='paper', choices=environment.SIZES,
                      help='paper: the default CLIP model; micro: a tiny one (a CPU check)')
  parser.add_argument('--tfds_dir', default=None, help='built datasets (default: the config\'s)')
  parser.add_argument('--out', default='benchmarks/results/evaluation.json')
  args = parser.parse_args()
  config = config_schema.get_config() if args.size == 'paper' else \
      environment.benchmark_config(args.size)
  config.data.tfds_dir = args.tfds_dir or config.data.tfds_dir
  rng = np.random.default_rng(0)
  train = input_pipeline.read_all(input_pipeline.open_split(config.data, 'train'), keys=('ecg',))
  real = shifted_copies(train['ecg'], args.num, rng)
  generated = shifted_copies(train['ecg'], args.num, rng)
  generated += 0.05 * rng.standard_normal(generated.shape).astype(np.float32)
  text = rng.standard_normal((args.num, text_encoders.embedding_dim(config.text)))
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  requested_hr = heart_rate.heart_rate(real)
  variables = factory.init_clip(config, jax.random.PRNGKey(0))
  features = ClipFeatures(config, variables, text_encoders.identity(config.text))

  first, median = median_time(lambda: evaluator.score(features, real, generated, text,
                                                      requested_hr), args.repeats)
  _, features_s = median_time(lambda: features.ecg_features(np.concatenate([real, generated])),
                              args.repeats)
  results = dict(num=args.num, repeats=args.repeats, first_call_s=round(first, 2),
                 median_score_s=round(median, 3), of_which_clip_features_s=round(features_s, 3),
                 clip_parameters=factory.count_params(variables['params']))
  print(json.dumps(results))
  hr_results = []
  for batch in args.hr_batch:
    ecg = shifted_copies(train['ecg'], batch, rng)
    first, median = median_time(lambda: heart_rate.heart_rate(ecg), args.repeats)
    hr_results.append(dict(ecgs=batch, median_s=round(median, 4),
                           ecgs_per_s=round(batch / median, 1)))
    print(json.dumps(hr_results[-1]))
  report = dict(
      benchmark='evaluator.score for N generated vs N real ECGs (generation excluded); '
                'heart-rate detector throughput',
      **environment.describe(),
      command=' '.join(['python', 'benchmarks/evaluation.py', f'--num {args.num}',
                        f'--hr_batch {" ".join(map(str, args.hr_batch))}',
                        f'--repeats {args.repeats}', f'--size {args.size}',
                        f'--out {args.out}']),
      score=results, heart_rate=hr_results)
  environment.write_report(report, args.out)


if __name__ == '__main__':
  main()
