"""Evaluate a trained workdir with the DiffuSETS protocol: generate ECGs for the real conditions
of a split and score them against the real ECGs (signal MAE, heart-rate error and sweep, FID,
rFID, CLIP score, rCLIP, precision/recall, lead consistency), each beside the same metric on
real data.

  python evaluate.py --workdir runs/demo --split test --sampler ddim --steps 50
  python evaluate.py --workdir runs/paper --clip_workdir runs/clip --split test --num 1000
  python evaluate.py --clip_workdir runs/demo --dataset ludb --out runs/pretrained_eval  # shipped

Needs the workdir's clip stage (python train.py ... --stage clip), or --clip_workdir. Writes
metrics.json, report.md with its figures, and the generated ECGs (generated.npz) to --out
(default WORKDIR/evaluation/SPLIT).
"""
from absl import app, flags, logging

from diffusets_jax.diffusion import sampling_settings
from diffusets_jax.evaluation import evaluator

_WORKDIR = flags.DEFINE_string('workdir', None, 'Trained workdir (from train.py). Default: the '
                                'pretrained model shipped in the package (then --clip_workdir '
                                'and --out are required).')
_CLIP_WORKDIR = flags.DEFINE_string('clip_workdir', None, 'Workdir whose clip stage scores the '
                                    'ECGs (default: --workdir). Share one to compare models.')
_SPLIT = flags.DEFINE_enum('split', 'test', ['train', 'val', 'test'], 'Real records to use.')
_NUM = flags.DEFINE_integer('num', 0, 'How many records of the split (a seeded random choice); '
                            '0: all of them.')
_SAMPLER = flags.DEFINE_enum('sampler', None, ['ddpm', 'ddim', 'dpmpp'],
                             'ddpm: the reference 1000-step sampler (the paper\'s protocol); '
                             'ddim or dpmpp (DPM-Solver++ 2M): --steps steps. Default: the '
                             'config\'s sampling.sampler.')
_STEPS = flags.DEFINE_integer('steps', None, 'ddim or dpmpp steps, one U-Net evaluation each '
                              '(default: config sampling.ddim_steps).')
_DDIM_ETA = flags.DEFINE_float(
    'ddim_eta', None, 'DDIM\'s fresh noise per step: 0 deterministic, 1 the DDPM posterior\'s, '
    'above 1 more. Default: the config\'s sampling.ddim_eta.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sampler, the record choice and the halves.')
_GUIDANCE = sampling_settings.define_guidance_flags(flags)
flags.adopt_module_key_flags(sampling_settings)  # listed by --help
_DATASET = flags.DEFINE_string('dataset', None, 'Evaluate on one dataset of a model trained on '
                               'several (data.name ptbxl+ludb): ptbxl or ludb. Default: all of '
                               'them.')
_PRECISION = flags.DEFINE_enum('precision', None, ['float32', 'bfloat16'],
                               'Compute precision of the sampling (default: the model config\'s).')
_SWEEP = flags.DEFINE_bool('sweep', True, 'Also run the heart-rate sweep (config evaluation.*).')
_SWEEP_REPORTS = flags.DEFINE_enum(
    'sweep_reports', None, list(evaluator.SWEEP_REPORTS),
    'consistent: each requested rate with the rhythm it is (Sinus bradycardia below 60 bpm, '
    'Sinus rhythm 60-100, Sinus tachycardia above 100); single: the paper\'s sweep, every rate '
    'with evaluation.sweep_report. Default: the config\'s evaluation.sweep_reports.')
_SWEEP_RATES = flags.DEFINE_list('sweep_rates', None, 'Requested heart rates of the sweep in bpm, '
                                 'e.g. 40,50,60 (default: the config\'s evaluation.sweep_rates).')
_TWO_SAMPLE = flags.DEFINE_bool('two_sample', True, 'Also run the classifier two-sample tests '
                                '(C2ST; config evaluation.two_sample_*).')
_DATA_FROM = flags.DEFINE_string(
    'data_from', None, 'A workdir whose config\'s data settings (datasets, folders, '
    'data.ptbxl_max_ecg_id) choose the real records, e.g. to score the shipped model on the '
    '1,987-record PTB-XL test fold. Default: the model\'s own.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default WORKDIR/evaluation/SPLIT, or '
                           'SPLIT_DATASET with --dataset).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  out = evaluator.evaluate(
      _WORKDIR.value, _SPLIT.value, _NUM.value, _CLIP_WORKDIR.value, _SAMPLER.value, _STEPS.value,
      _SEED.value, _OUT.value, _SWEEP.value, dataset=_DATASET.value, precision=_PRECISION.value,
      ddim_eta=_DDIM_ETA.value, two_sample_tests_run=_TWO_SAMPLE.value,
      sweep_reports=_SWEEP_REPORTS.value, sweep_rates=_SWEEP_RATES.value,
      data_from=_DATA_FROM.value, **sampling_settings.flag_values(_GUIDANCE))
  print(evaluator.summary_table(out / 'metrics.json'))
  for label, name in (('metrics', 'metrics.json'), ('report', 'report.md'),
                      ('generated ECGs', 'generated.npz')):
    print(f'{label + ":":<16}{out / name}')


if __name__ == '__main__':
  app.run(main)
