"""Train DiffuSETS: the VAE, then the latents, then the latent diffusion model.

  python train.py --config configs/tiny.py --workdir runs/tiny
  python train.py --config configs/tiny.py --workdir runs/tiny --stage clip
  python train.py --config configs/diffusets.py --workdir runs/paper --stage diffusion \
      --config.diffusion.batch_size=256

A killed run resumes from its latest checkpoint when started again with the same workdir.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from diffusets_jax import config_validation
from diffusets_jax.io import plots
from diffusets_jax.training import checkpoints, trainer

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/tiny.py.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, latents and metrics.')
_STAGE = flags.DEFINE_enum('stage', 'all', list(trainer.STAGES),
                           'vae: train the VAE and encode latents; latents: re-encode only; '
                           'diffusion: train the U-Net on the latents; clip: train the ECG-text '
                           'model evaluate.py scores ECGs with; all: every stage.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO
  config = config_validation.validate(_CONFIG.value)
  workdir = trainer.train_and_evaluate(config, _WORKDIR.value, _STAGE.value)
  curves = plots.plot_training_curves(workdir)
  written = [('config', workdir / 'config.json')]
  for stage in checkpoints.STAGES:
    if (workdir / stage).exists():
      written += [(f'{stage} checkpoints', workdir / stage / 'checkpoints'),
                  (f'{stage} metrics', workdir / stage / 'metrics.jsonl')]
  if (workdir / 'latents').exists():
    written.append(('latents', workdir / 'latents'))
  for stage in ('diffusion', 'clip'):
    if trainer.conditioning_path(workdir, stage).exists():
      written.append((f'{stage} text conditioning', trainer.conditioning_path(workdir, stage)))
  if curves:
    written.append(('training curves', curves))
  for label, path in written:
    print(f'{label + ":":<30}{path}')


if __name__ == '__main__':
  app.run(main)
