"""scripts/seed_spread.py: the spread of evaluate.py's figures over sampling seeds."""
import json
import subprocess
import sys

import numpy as np
import pytest

from diffusets_jax.evaluation import seed_spread


def metrics(seed, hr_mae, fid_real, **changes):
  run = dict(workdir='pretrained', clip_workdir='runs/clip', split='test', dataset='ptbxl',
             num=92, seed=seed, sampler='ddpm', steps=1000, guidance_scale=3.0,
             guidance_min_step=0, precision='float32', text='minilm',
             feature=dict(heart_rate_mae_bpm=dict(generated=hr_mae, real=0.0)),
             diagnostic=dict(fid=dict(generated=2.0 * seed, real=fid_real)),
             heart_rate_sweep=None)
  run.update(changes)
  return run


def test_mean_sd_and_range_per_metric():
  runs = [metrics(0, 9.9, 3.0), metrics(1, 12.0, 5.0), metrics(2, 8.1, 4.0)]
  result = seed_spread.spread(runs, ['a', 'b', 'c'])
  rows = {row['metric']: row for row in result['rows']}
  # Rows a run lacks (the sweep of a --nosweep run, metrics absent here) are left out.
  assert set(rows) == {'heart-rate MAE (bpm)', 'FID'}
  hr = rows['heart-rate MAE (bpm)']['generated']
  assert hr['values'] == [9.9, 12.0, 8.1]
  assert hr['mean'] == pytest.approx(10.0)
  assert hr['sd'] == pytest.approx(np.std([9.9, 12.0, 8.1], ddof=1))
  assert (hr['min'], hr['max']) == (8.1, 12.0)
  assert rows['FID']['real']['values'] == [3.0, 5.0, 4.0]
  assert result['seeds'] == [0, 1, 2]
  table = seed_spread.markdown(result)
  assert '| heart-rate MAE (bpm) | 9.9 | 12 | 8.1 | 10 |' in table
  assert '| FID | 0 | 2 | 4 | 2 | 2 | 0 - 4 | 4 (3 - 5) |' in table


def test_second_detector_rows_come_where_the_runs_have_them():
  runs = [metrics(seed, 9.0, 3.0, feature=dict(
      heart_rate_mae_bpm=dict(generated=9.0, real=0.0),
      rhythm_pauses_xqrs=dict(generated=0.1 * (seed + 1), real=0.02))) for seed in range(2)]
  rows = {row['metric']: row for row in seed_spread.spread(runs, ['a', 'b'])['rows']}
  assert rows['ECGs with a pause, second detector']['generated']['values'] == [0.1, 0.2]
  assert 'heart-rate MAE, second detector (bpm)' not in rows  # older runs lack it


@pytest.mark.parametrize('field, value', [('guidance_scale', 5.0), ('split', 'val'),
                                          ('workdir', 'runs/other')])
def test_runs_that_differ_in_more_than_the_seed_are_refused(field, value):
  runs = [metrics(0, 9.9, 3.0), metrics(1, 12.0, 5.0, **{field: value})]
  with pytest.raises(ValueError, match=f"differ in '{field}'"):
    seed_spread.spread(runs, ['a', 'b'])


def test_repeated_seeds_and_single_runs_are_refused():
  with pytest.raises(ValueError, match='same seed'):
    seed_spread.spread([metrics(0, 9.9, 3.0), metrics(0, 9.9, 3.0)], ['a', 'b'])
  with pytest.raises(ValueError, match='at least two runs'):
    seed_spread.spread([metrics(0, 9.9, 3.0)], ['a'])


def test_command_line_writes_json_and_table(tmp_path):
  folders = []
  for seed, hr_mae in ((0, 9.0), (1, 11.0)):
    folder = tmp_path / f'seed{seed}'
    folder.mkdir()
    run = metrics(seed, hr_mae, 3.0)
    if seed == 0:  # written before guidance_min_step was recorded: every step was guided
      del run['guidance_min_step']
    (folder / 'metrics.json').write_text(json.dumps(run))
    folders.append(str(folder))
  out = tmp_path / 'spread'
  subprocess.run([sys.executable, 'scripts/seed_spread.py', *folders, '--out', str(out)],
                 check=True, capture_output=True)
  written = json.loads((out / 'seed_spread.json').read_text())
  assert written['rows'][0]['generated']['mean'] == pytest.approx(10.0)
  assert '| heart-rate MAE (bpm) | 9 | 11 | 10 |' in (out / 'seed_spread.md').read_text()
  missing = subprocess.run([sys.executable, 'scripts/seed_spread.py', str(tmp_path / 'nowhere'),
                            folders[0], '--out', str(out)], capture_output=True, text=True)
  assert missing.returncode != 0 and 'nowhere not found' in missing.stderr
  assert 'Traceback' not in missing.stderr


def test_settings_of_a_guidance_that_is_off_may_differ(tmp_path):
  """Without autoguidance its dropout changes nothing: such runs compare; with it, they do not."""
  def load(seed, **changes):
    path = tmp_path / f'{seed}_{len(changes)}_{sorted(changes.items())}.json'
    path.write_text(json.dumps(metrics(seed, 9.0, 3.0, **changes)))
    return seed_spread.load(path)
  off = [load(0, autoguidance_scale=1.0, guidance_dropout=0.0), load(1, guidance_dropout=0.3)]
  assert seed_spread.spread(off, ['a', 'b'])['guidance_dropout'] is None
  on = [load(0, autoguidance_scale=3.0, guidance_dropout=0.5),
        load(1, autoguidance_scale=3.0, guidance_dropout=0.3)]
  with pytest.raises(ValueError, match="differ in 'guidance_dropout'"):
    seed_spread.spread(on, ['a', 'b'])
  result = seed_spread.spread([load(0, autoguidance_scale=3.0, guidance_dropout=0.5,
                                    autoguidance_min_step=150),
                               load(1, autoguidance_scale=3.0, guidance_dropout=0.5,
                                    autoguidance_min_step=150)], ['a', 'b'])
  assert 'guidance 3, autoguidance 3 (dropout 0.5) on t >= 150; seeds 0, 1' in \
      seed_spread.markdown(result)
