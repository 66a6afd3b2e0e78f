"""Stage `vae`: the VAE on the training split's ECGs, with the reference's KL annealing; or, with
vae.train_encoder False, the decoder of a trained VAE fine-tuned (e.g. against a discriminator)."""
import numpy as np

from diffusets_jax import batching, train_state
from diffusets_jax.datasets import input_pipeline
from diffusets_jax.models import factory
from diffusets_jax.store import loading
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
  rows = batching.process_rows(batch_size)
  per_epoch = batching.steps_per_epoch(n, batch_size)
  total = per_epoch * config.vae.epochs
  vae, state = train_state.vae_state(config, total)
  v = config.vae
  if config.train.init_from:  # fine-tuning a trained VAE (validation: decoder only)
    state = state.replace(params=loading.init_source_vae_params(config))
  lr_fn = train_state.vae_lr(config, total)
  what = '' if v.train_encoder else f', decoder only, from {loading.init_source_name(config)}'
  if v.adversarial_weight > 0:
    what += (f', against a patch discriminator of '
             f'{factory.count_params(state.discriminator_params):,} parameters from step '
             f'{v.adversarial_start_step}')
  log_main(f'[vae] {factory.count_params(state.params):,} parameters, {n} training ECGs, '
           f'{total} steps of batch {batch_size}{what} on {describe_devices()}')

  def batch_fn(step):
    index = batching.batch_indices(step, n, batch_size, config.seed)[rows]
    return dict(ecg=input_pipeline.read_rows(source, index, 'ecg'),
                example_index=np.arange(batch_size)[rows])

  adversarial = v.adversarial_weight > 0

  def step_args(step):
    args = dict(kl_weight=v.kl_weight * kl_weight(step, per_epoch, v.kl_anneal_epochs))
    if adversarial:
      args['adversarial_weight'] = v.adversarial_weight * (step >= v.adversarial_start_step)
    return args

  p_step = steps.make_vae_step(vae, v.latent_noise, v.spectral_weight, v.train_encoder,
                               factory.make_discriminator(config) if adversarial else None)
  return run_loop('vae', config, workdir, state, p_step, batch_fn,
                  min(total, max_steps or total), lr_fn, step_args)
