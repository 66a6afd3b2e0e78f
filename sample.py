"""Generate 12-lead ECGs from clinical reports and patient information, with the shipped
pretrained model (default) or a trained workdir.

  python sample.py --text "Sinus bradycardia" --age 60 --sex F --hr 50 --out samples/brady
  python sample.py --workdir runs/demo --text "Sinus bradycardia" \
      --text "Electric axis of the heart: left axis deviation" --age 60 --sex F --hr 55 \
      --num 4 --sampler ddim --steps 50 --seed 0 --out samples/brady

Several --text values are ordered reports, most important first. Each ECG is written as WFDB
(.hea/.dat), PNG (standard ECG paper), and all of them together as one NPZ.
"""
import json
from pathlib import Path

from absl import app, flags, logging

from diffusets_jax.conditioning import text_encoders
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ
from diffusets_jax.diffusion import sampling_settings
from diffusets_jax.generate import Generator
from diffusets_jax.io import ecg_files, plots
from diffusets_jax.store import open_model

_WORKDIR = flags.DEFINE_string('workdir', None, 'Trained workdir (from train.py). Default: the '
                                'pretrained model shipped in the package (docs/pretrained.md).')
_TEXT = flags.DEFINE_multi_string('text', None, 'Clinical report; repeat for ordered reports.')
_AGE = flags.DEFINE_float('age', None, 'Age in years, 0-120. Omit if unknown: it is then filled '
                          'with the median training age the model recorded.')
_SEX = flags.DEFINE_enum('sex', 'U', ['M', 'F', 'U'], 'Sex: M, F, or U (unknown, coded 0.5).',
                         case_sensitive=False)
_HR = flags.DEFINE_float('hr', None, 'Heart rate in bpm, 20-300.')
_NUM = flags.DEFINE_integer('num', 4, 'How many ECGs to generate.')
_SAMPLER = flags.DEFINE_enum('sampler', None, ['ddpm', 'ddim', 'dpmpp'],
                             'ddpm: the reference 1000-step ancestral sampler; ddim: --steps '
                             'steps, deterministic unless --ddim_eta > 0; dpmpp: DPM-Solver++ '
                             '(2M), --steps steps, deterministic. Default: the config\'s '
                             'sampling.sampler.')
_STEPS = flags.DEFINE_integer('steps', None, 'ddim or dpmpp steps, one U-Net evaluation each '
                              '(default: config sampling.ddim_steps).')
_DDIM_ETA = flags.DEFINE_float(
    'ddim_eta', None, 'DDIM\'s fresh noise per step: 0 deterministic, 1 the DDPM posterior\'s, '
    'above 1 more. Default: the config\'s sampling.ddim_eta.')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_GUIDANCE = sampling_settings.define_guidance_flags(flags)
flags.adopt_module_key_flags(sampling_settings)  # listed by --help
_PRECISION = flags.DEFINE_enum('precision', None, ['float32', 'bfloat16'],
                               'Compute precision of the U-Net and VAE decoder (default: the '
                               'model config\'s; bfloat16 is for accelerators).')
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_WFDB_RATE = flags.DEFINE_enum('wfdb_rate', '102.4', ['102.4', '500'],
                               'Sample rate of the WFDB files: the model\'s 102.4 Hz, or 500 Hz '
                               '(FFT-resampled).')
_TEXT_ENCODER = flags.DEFINE_enum(
    'text_encoder', None, list(text_encoders.ENCODERS),
    'The text encoder you expect the model to use; sampling stops with an error if it was '
    'trained with another. Default: the one it was trained with.')
flags.mark_flags_as_required(['text', 'hr', 'out'])


def expected_text_encoder(model, name: str | None):
  """The encoder named on the command line, with the model's other text settings."""
  if name is None:
    return None
  text_config = model.config.text.copy_and_resolve_references()
  text_config.encoder, text_config.model, text_config.dim = name, '', 0
  text_encoders.resolve(text_config)
  return text_encoders.make_text_encoder(text_config)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO
  sex = _SEX.value.upper()
  model = open_model(_WORKDIR.value or 'pretrained')
  generator = Generator(model, expected_text_encoder(model, _TEXT_ENCODER.value),
                        precision=_PRECISION.value)
  settings = generator.settings(_SAMPLER.value, _STEPS.value, _DDIM_ETA.value,
                                **sampling_settings.flag_values(_GUIDANCE))
  ecgs = generator.generate(_TEXT.value, _AGE.value, None if sex == 'U' else sex, _HR.value,
                            _NUM.value, seed=_SEED.value, **settings.as_kwargs())
  age = generator.filled_age(_AGE.value)
  out = Path(_OUT.value)
  prompt = generator.prompt(_TEXT.value)
  conditions = dict(model=_WORKDIR.value or 'pretrained', reports=_TEXT.value, prompt=prompt,
                    age=age, age_known=_AGE.value is not None, sex=sex, heart_rate=_HR.value,
                    sampler=settings.sampler,
                    steps=settings.unet_steps(generator.schedule.num_timesteps),
                    ddim_eta=settings.ddim_eta if settings.sampler == 'ddim' else None,
                    **settings.guidance(), seed=_SEED.value,
                    text_encoder=generator.text_encoder.model)
  age_text = f'{age:g} y' if _AGE.value is not None else f'age unknown ({age:g} y used)'
  title = (f'{" | ".join(_TEXT.value)}\n{sex}, {age_text}, requested HR {_HR.value:g} bpm, '
           f'{settings.describe()}, seed {_SEED.value}')
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
