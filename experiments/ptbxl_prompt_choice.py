"""Which PTB-XL text should condition an English sentence encoder: the free-text `report`
(mostly German) or the English SCP-statement prompt? Measured as how much diagnosis the
embedding carries: leave-one-out 1-nearest-neighbour accuracy (cosine) of each record's
diagnostic superclass (NORM, MI, STTC, CD, HYP: the `diagnostic_class` of its most likely
diagnostic statement), over the bundled PTB-XL records.

  python experiments/ptbxl_prompt_choice.py --out docs/ptbxl_prompt_choice.json

Caveat: the SCP statements were coded from the reports, so both texts describe the same
findings; the question is only which one the encoder can read.
"""
import argparse
import ast
import collections
import csv
import json
from pathlib import Path

import numpy as np

from configs import default
from diffusets_jax.conditioning import prompts, text_encoders
from diffusets_jax.datasets import ptbxl


def superclass(codes: dict, statements: dict) -> str | None:
  diagnostic = [(likelihood, code) for code, likelihood in codes.items()
                if statements.get(code, {}).get('diagnostic_class')]
  if not diagnostic:
    return None
  best = max(diagnostic, key=lambda item: item[0])[1]  # max keeps the first of equal likelihoods
  return statements[best]['diagnostic_class']


def one_nn_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
  unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  similarity = unit @ unit.T
  np.fill_diagonal(similarity, -np.inf)
  return float(np.mean(labels[np.argmax(similarity, axis=1)] == labels))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--manual_dir', default='data/ptbxl')
  parser.add_argument('--out', default='docs/ptbxl_prompt_choice.json')
  args = parser.parse_args()
  root = Path(args.manual_dir)
  with open(root / 'scp_statements.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  code_column = next(iter(rows[0]))
  statements = {row[code_column]: row for row in rows}
  descriptions = ptbxl.read_scp_descriptions(root / 'scp_statements.csv')
  config = default.get_config()
  text_encoders.resolve(config.text)
  encoder = text_encoders.make_text_encoder(config.text, use_cache=False)
  texts = dict(report=[], scp=[])
  labels = []
  with open(root / 'ptbxl_database.csv', newline='') as f:
    for row in csv.DictReader(f):
      codes = {k: float(v) for k, v in ast.literal_eval(row['scp_codes']).items()}
      label = superclass(codes, statements)
      scp = ptbxl.scp_reports(codes, descriptions)
      if label is None or not scp or not row['report'].strip():
        continue
      labels.append(label)
      texts['report'].append(prompts.build_prompt([row['report']], config.text.template))
      texts['scp'].append(prompts.build_prompt(scp, config.text.template))
  labels = np.array(labels)
  counts = collections.Counter(labels.tolist())
  result = dict(records=len(labels), superclasses=dict(counts.most_common()),
                majority_baseline=max(counts.values()) / len(labels),
                encoder=text_encoders.identity(config.text)['model'])
  for name, prompt_list in texts.items():
    result[f'{name}_one_nn_accuracy'] = one_nn_accuracy(encoder.encode(prompt_list), labels)
    result[f'{name}_example'] = prompt_list[1]
  Path(args.out).write_text(json.dumps(result, indent=1))
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  main()
