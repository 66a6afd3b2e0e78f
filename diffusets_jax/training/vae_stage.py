"""Stage `vae`: the VAE on the training split's ECGs, with the reference's KL annealing."""
import numpy as np

from diffusets_jax import train_state
from diffusets_jax.datasets import input_pipeline
from diffusets_jax.models import factory
from diffusets_jax.training import steps
from diffusets_jax.training.loop import describe_devices, log_main, run_loop


def kl_weight(step: int, steps_per_epoch: int, anneal_epochs: int) -> float:
  """Monotonic KL annealing of the reference: (epoch + 1) / anneal_epochs, capped at 1."""
  return min((step // steps_per_epoch + 1) / anneal_epochs, 1.0)


def train_vae(config, workdir, max_steps: int | None = None):
  """Stage `vae` on the training split's ECGs. `max_steps` stops early (the schedule is unchanged),
  which is how a killed run is simulated in tests."""
  source = input_pipeline.open_split(config.data, 'train')
  n = len(source)
  batch_size = config.vae.batch_size
  rows = input_pipeline.process_rows(batch_size)
  per_epoch = input_pipeline.steps_per_epoch(n, batch_size)
  total = per_epoch * config.vae.epochs
  vae, state = train_state.vae_state(config, total)
  lr_fn = train_state.vae_lr(config, total)
  log_main(f'[vae] {factory.count_params(state.params):,} parameters, {n} training ECGs, '
           f'{total} steps of batch {batch_size} on {describe_devices()}')

  def batch_fn(step):
    index = input_pipeline.batch_indices(step, n, batch_size, config.seed)[rows]
    return dict(ecg=input_pipeline.read_rows(source, index, 'ecg'),
                example_index=np.arange(batch_size)[rows])

  def step_args(step):
    return dict(kl_weight=config.vae.kl_weight * kl_weight(step, per_epoch,
                                                           config.vae.kl_anneal_epochs))

  return run_loop('vae', config, workdir, state,
                  steps.make_vae_step(vae, config.vae.latent_noise, config.vae.spectral_weight),
                  batch_fn,
                  min(total, max_steps or total), lr_fn, step_args)
