"""Train DiffuSETS: the VAE, then the latents, then the latent diffusion model.

  python train.py --config configs/tiny.py --workdir runs/tiny
  python train.py --config configs/tiny.py --workdir runs/tiny --stage clip
  python train.py --config configs/diffusets.py --workdir runs/paper --stage diffusion \
      --config.diffusion.batch_size=256

A killed run resumes from its latest checkpoint when started again with the same workdir.
Several hosts (or processes): add --coordinator_address=HOST0:PORT --num_processes=N
--process_id=I on each, or --distributed where the cluster is detected (docs/datasets.md).
"""
from absl import app, flags, logging
from ml_collections import config_flags

from diffusets_jax import config_validation
from diffusets_jax.io import plots
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import distributed, stages

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/tiny.py.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, latents and metrics.')
_STAGE = flags.DEFINE_enum('stage', 'all', list(stages.STAGES),
                           'vae: train the VAE and encode latents; latents: re-encode only; '
                           'diffusion: train the U-Net on the latents; clip: train the ECG-text '
                           'model evaluate.py scores ECGs with; all: every stage.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Multi-process run with the cluster '
                                  'detected by jax.distributed.initialize (TPU pod, Slurm, MPI).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'Multi-process run: host:port of '
                                   'process 0, with --num_processes and --process_id.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-process run: how many.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-process run: this one, 0-based.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO
  config = config_validation.validate(_CONFIG.value)
  if _DISTRIBUTED.value or _COORDINATOR.value:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  workdir = stages.train_stages(config, _WORKDIR.value, _STAGE.value)
  if not distributed.is_main_process():
    return
  curves = plots.plot_training_curves(workdirs.training_logs(workdir),
                                     workdir / 'training_curves.png')
  written = [('config', workdirs.config_path(workdir))]
  for stage in workdirs.STAGES:
    if (workdir / stage).exists():
      written += [(f'{stage} checkpoints', workdirs.checkpoint_dir(workdir, stage)),
                  (f'{stage} metrics', workdirs.metrics_path(workdir, stage))]
  if workdirs.latents_path(workdir, 'train').parent.exists():
    written.append(('latents', workdirs.latents_path(workdir, 'train').parent))
  for stage in ('diffusion', 'clip'):
    if workdirs.conditioning_path(workdir, stage).exists():
      written.append((f'{stage} text conditioning', workdirs.conditioning_path(workdir, stage)))
  if curves:
    written.append(('training curves', curves))
  for label, path in written:
    print(f'{label + ":":<30}{path}')


if __name__ == '__main__':
  app.run(main)
