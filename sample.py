"""Generate 12-lead ECGs from clinical reports and patient information with a trained workdir.

  python sample.py --workdir runs/demo --text "Sinus bradycardia" \
      --text "Electric axis of the heart: left axis deviation" --age 60 --sex F --hr 55 \
      --num 4 --sampler ddim --steps 50 --seed 0 --out samples/brady

Several --text values are ordered reports, most important first. Each ECG is written as WFDB
(.hea/.dat), PNG (standard ECG paper), and all of them together as one NPZ.
"""
import json
from pathlib import Path

from absl import app, flags, logging

from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ
from diffusets_jax.generate import Generator
from diffusets_jax.io import ecg_files, plots

_WORKDIR = flags.DEFINE_string('workdir', None, 'Trained workdir (from train.py).')
_TEXT = flags.DEFINE_multi_string('text', None, 'Clinical report; repeat for ordered reports.')
_AGE = flags.DEFINE_float('age', None, 'Age in years, 0-120.')
_SEX = flags.DEFINE_enum('sex', None, ['M', 'F'], 'Sex: M or F.', case_sensitive=False)
_HR = flags.DEFINE_float('hr', None, 'Heart rate in bpm, 20-300.')
_NUM = flags.DEFINE_integer('num', 4, 'How many ECGs to generate.')
_SAMPLER = flags.DEFINE_enum('sampler', None, ['ddpm', 'ddim'],
                             'ddpm: the reference 1000-step ancestral sampler; ddim: --steps '
                             'deterministic steps. Default: the config\'s sampling.sampler.')
_STEPS = flags.DEFINE_integer('steps', None, 'DDIM steps (default: config sampling.ddim_steps).')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_WFDB_RATE = flags.DEFINE_enum('wfdb_rate', '102.4', ['102.4', '500'],
                               'Sample rate of the WFDB files: the model\'s 102.4 Hz, or 500 Hz '
                               '(FFT-resampled).')
flags.mark_flags_as_required(['workdir', 'text', 'age', 'sex', 'hr', 'out'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO
  sex = _SEX.value.upper()
  generator = Generator.from_workdir(_WORKDIR.value)
  ecgs = generator.generate(_TEXT.value, _AGE.value, sex, _HR.value, _NUM.value, _SAMPLER.value,
                            _STEPS.value, _SEED.value)
  out = Path(_OUT.value)
  prompt = generator.prompt(_TEXT.value)
  sampler = _SAMPLER.value or generator.config.sampling.sampler
  conditions = dict(reports=_TEXT.value, prompt=prompt, age=_AGE.value, sex=sex,
                    heart_rate=_HR.value, sampler=sampler, seed=_SEED.value)
  title = (f'{" | ".join(_TEXT.value)}\n{sex}, {_AGE.value:g} y, requested HR {_HR.value:g} bpm, '
           f'{sampler}, seed {_SEED.value}')
  for i, ecg in enumerate(ecgs):
    name = f'ecg_{i:03d}'
    ecg_files.write_wfdb(ecg, out, name, float(_WFDB_RATE.value),
                         comments=[f'{k}: {v}' for k, v in conditions.items()])
    plots.plot_ecg(ecg, SAMPLE_RATE_HZ, out / f'{name}.png', f'{title}, #{i}')
  ecg_files.write_npz(out / 'ecgs.npz', ecg=ecgs, conditions=json.dumps(conditions))
  print(f'wrote {len(ecgs)} ECGs to {out}/: ecg_NNN.hea/.dat (WFDB, {_WFDB_RATE.value} Hz), '
        f'ecg_NNN.png, ecgs.npz ({ecgs.shape}, mV)')


if __name__ == '__main__':
  app.run(main)
