"""Agreement of our heart-rate detector with wfdb's XQRS on the LUDB records.

Ours runs on the 102.4 Hz, 12-lead, resampled signal the model sees; XQRS (a different algorithm)
runs on lead II of the original 500 Hz record, mean RR from its detected beats.
Writes JSON (per-record rates and summary) and prints the summary.

  python scripts/heart_rate_agreement.py --out docs/heart_rate_agreement.json
"""
import argparse
import json
import logging
from pathlib import Path

import numpy as np
import wfdb
import wfdb.processing

from diffusets_jax.datasets import heart_rate, ludb, preprocessing


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--ludb', default=str(ludb.BUNDLED_DIR), help='LUDB folder (with RECORDS)')
  parser.add_argument('--out', default='docs/heart_rate_agreement.json', help='JSON output path')
  args = parser.parse_args()
  logging.getLogger('wfdb').setLevel(logging.ERROR)
  root = Path(args.ludb)
  ids, ours, theirs = [], [], []
  for line in (root / 'RECORDS').read_text().split():
    record = wfdb.rdrecord(str(root / line))
    signal = record.p_signal[:, preprocessing.standard_lead_order(record.sig_name)]
    signal, _ = preprocessing.replace_nans(signal)
    ours.append(float(heart_rate.heart_rate(preprocessing.resample(signal))))
    theirs.append(heart_rate.xqrs_rate(signal[:, 1], record.fs))
    ids.append(Path(line).name)
  ours, theirs = np.array(ours), np.array(theirs)
  valid = np.isfinite(ours) & np.isfinite(theirs)
  diff = np.abs(ours[valid] - theirs[valid])
  summary = dict(
      records=len(ids), both_valid=int(valid.sum()),
      mae_bpm=float(diff.mean()), median_abs_diff_bpm=float(np.median(diff)),
      within_5_bpm=float((diff <= 5).mean()), within_10_bpm=float((diff <= 10).mean()),
      pearson_r=float(np.corrcoef(ours[valid], theirs[valid])[0, 1]),
      ours_range_bpm=[float(np.nanmin(ours)), float(np.nanmax(ours))])
  summary['xqrs_found_no_rate'] = [ids[i] for i in np.flatnonzero(~np.isfinite(theirs))]
  summary['ours_found_no_rate'] = [ids[i] for i in np.flatnonzero(~np.isfinite(ours))]
  worst = np.argsort(-np.where(valid, np.abs(ours - theirs), -1.0))[:5]
  summary['largest_disagreements'] = [
      dict(record=ids[i], ours=round(ours[i], 1), xqrs=round(theirs[i], 1)) for i in worst]
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(dict(summary=summary, records=dict(
      ids=ids, ours_bpm=ours.round(2).tolist(), xqrs_bpm=theirs.round(2).tolist())), indent=1))
  print(json.dumps(summary, indent=1))
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
