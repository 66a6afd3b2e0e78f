"""Throughput of the Flax MiniLM text encoder on this machine, in prompts per second.

The prompts are the 200 LUDB records' own prompts (paper template), so their lengths are real.
For each batch size, the first `encode` call compiles the padded shapes it needs (reported as
first_call_s); then the median of --repeats full `encode` calls (tokenize, pad, jitted forward,
copy back to numpy) gives the throughput. The embedding cache is not involved. The output
holds the prompts, so benchmarks/text_encoder_reference.py can time sentence-transformers
(PyTorch, its own environment) on exactly the same input.

  python benchmarks/text_encoder.py --batch 1 16 64 --out benchmarks/results/text_encoder_cpu.json
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import wfdb

from diffusets_jax import config_schema
from diffusets_jax.conditioning import minilm, prompts
from diffusets_jax.datasets import ludb
import environment  # benchmarks/environment.py, beside this script


def ludb_prompts(manual_dir: Path) -> list[str]:
  template = config_schema.get_config().text.template
  headers = sorted((manual_dir / 'data').glob('*.hea'), key=lambda p: int(p.stem))
  return [prompts.build_prompt(ludb.parse_comments(wfdb.rdheader(str(h.with_suffix(''))).comments)[2],
                               template) for h in headers]


def time_encoder(encoder, texts: list[str], repeats: int) -> dict:
  start = time.perf_counter()
  encoder.encode(texts)
  first_call_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    encoder.encode(texts)  # returns numpy: the device work has finished
    times.append(time.perf_counter() - start)
  tokenize_start = time.perf_counter()
  encoder.tokenize(texts)
  tokenize_s = time.perf_counter() - tokenize_start
  median = float(np.median(times))
  return dict(batch=encoder.batch_size, prompts=len(texts), repeats=repeats,
              first_call_s=round(first_call_s, 2), median_s=round(median, 4),
              prompts_per_s=round(len(texts) / median, 1), tokenize_s=round(tokenize_s, 4))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, nargs='+', default=[1, 16, 64])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--manual_dir', default='data/ludb')
  parser.add_argument('--out', default='benchmarks/results/text_encoder.json')
  args = parser.parse_args()
  texts = ludb_prompts(Path(args.manual_dir))
  lengths = [len(ids) for ids in minilm.MiniLMEncoder(1).tokenize(texts)]
  print(f'{len(texts)} LUDB prompts, {len(set(texts))} distinct, tokens: median '
        f'{int(np.median(lengths))}, max {max(lengths)}')
  results = []
  for batch in args.batch:
    result = time_encoder(minilm.MiniLMEncoder(batch), texts, args.repeats)
    print(json.dumps(result))
    results.append(result)
  report = dict(
      benchmark='Flax all-MiniLM-L6-v2 encode(), LUDB prompts, prompts per second',
      **environment.describe(),
      token_lengths=dict(median=int(np.median(lengths)), max=max(lengths)),
      command=' '.join(['python', 'benchmarks/text_encoder.py',
                        f'--batch {" ".join(map(str, args.batch))}', f'--repeats {args.repeats}',
                        f'--out {args.out}']),
      results=results, prompts=texts)
  environment.write_report(report, args.out)


if __name__ == '__main__':
  main()
