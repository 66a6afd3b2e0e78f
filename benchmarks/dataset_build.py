"""Build throughput of the record-parallel dataset builders, in records per second.

Writes a synthetic PTB-XL folder of --records records (real layout and CSV columns, 500 Hz,
10 s, 12 leads: tests/fake_physionet.py), then builds the `ptbxl` TFDS dataset from it with
each --workers count (reading, NaN check, FFT resampling, heart-rate detection, ArrayRecord
writing), timing the whole build. Peak resident memory of the building process and of its
worker processes is reported from getrusage (cumulative over the runs of one invocation). Extrapolates the time to MIMIC-IV-ECG's 800,035
records.

  python benchmarks/dataset_build.py --records 2000 --workers 1 2 \
      --out benchmarks/results/dataset_build_cpu.json
"""
import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diffusets_jax import config_schema  # noqa: E402
from diffusets_jax.datasets import input_pipeline, wfdb_records  # noqa: E402
from tests import fake_physionet  # noqa: E402
import environment  # noqa: E402  (benchmarks/environment.py, beside this script)

MIMIC_RECORDS = 800_035


def write_ptbxl(root: Path, count: int) -> None:
  rows = []
  for ecg_id in range(1, count + 1):
    folder = f'records500/{ecg_id // 1000 * 1000:05d}'
    signal = fake_physionet.synthetic_ecg(50 + ecg_id % 90, seed=ecg_id)
    fake_physionet.write_record(root / folder, f'{ecg_id:05d}_hr', signal,
                                fake_physionet.ptbxl_lead_names())
    rows.append(dict(ecg_id=ecg_id, age=60, sex=ecg_id % 2, report='sinusrhythmus normales ekg',
                     scp_codes="{'NORM': 100.0, 'SR': 0.0}", strat_fold=1 + ecg_id % 10,
                     filename_hr=f'{folder}/{ecg_id:05d}_hr'))
  fake_physionet.write_csv(root / 'ptbxl_database.csv', fake_physionet.PTBXL_COLUMNS, rows)
  fake_physionet.write_csv(root / 'scp_statements.csv', fake_physionet.SCP_COLUMNS,
                           [{'': 'NORM', 'description': 'normal ECG', 'diagnostic': '1.0'},
                            {'': 'SR', 'description': 'sinus rhythm', 'rhythm': '1.0'}])


def peak_rss_mb(who) -> float:
  return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--records', type=int, default=2000)
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--out', default='benchmarks/results/dataset_build.json')
  args = parser.parse_args()
  scratch = Path(tempfile.mkdtemp(prefix='dataset_build_'))
  try:
    start = time.perf_counter()
    write_ptbxl(scratch / 'ptbxl', args.records)
    print(f'wrote {args.records} synthetic records in {time.perf_counter() - start:.1f} s')
    results = []
    for workers in args.workers:
      config = config_schema.get_config().data
      config.name, config.manual_dir = 'ptbxl', str(scratch / 'ptbxl')
      config.tfds_dir, config.num_workers = str(scratch / f'tfds_{workers}'), workers
      start = time.perf_counter()
      builder = input_pipeline.build(config)[config.name]
      seconds = time.perf_counter() - start
      if workers > 1:  # end the workers, so getrusage(RUSAGE_CHILDREN) reports their peak
        wfdb_records.worker_pool(workers).shutdown()
        wfdb_records.worker_pool.cache_clear()
      built = sum(builder.info.splits[s].num_examples for s in ('train', 'val', 'test'))
      rate = built / seconds
      results.append(dict(workers=workers, records=built, seconds=round(seconds, 2),
                          records_per_s=round(rate, 1),
                          mimic_800k_hours=round(MIMIC_RECORDS / rate / 3600, 2),
                          peak_rss_main_mb=round(peak_rss_mb(resource.RUSAGE_SELF)),
                          peak_rss_largest_worker_mb=round(peak_rss_mb(
                              resource.RUSAGE_CHILDREN))))
      print(json.dumps(results[-1]))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  environment.write_report(dict(
      benchmark='ptbxl TFDS build from a synthetic PTB-XL folder, records per second',
      **environment.describe(),
      command=' '.join(['python', 'benchmarks/dataset_build.py', f'--records {args.records}',
                        f'--workers {" ".join(map(str, args.workers))}', f'--out {args.out}']),
      results=results), args.out)


if __name__ == '__main__':
  main()
