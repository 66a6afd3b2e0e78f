"""Stage `diffusion`: the U-Net on the pre-encoded training latents, scored on held-out latents
as it trains; optionally warm-started from another model (train.init_from)."""
import json

import numpy as np

from diffusets_jax import batching, train_state
from diffusets_jax.conditioning.record import check_record
from diffusets_jax.diffusion.schedule import schedule_from_config
from diffusets_jax.models import factory
from diffusets_jax.store import loading
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import heldout as heldout_loss
from diffusets_jax.training import steps
from diffusets_jax.training.loop import describe_devices, log_main, run_loop


def initial_unet_state(config, total_steps: int):
  """unet_state, started from the (EMA) U-Net weights of the model train.init_from names:
  weights, EMA and a fresh optimiser (a fresh U-Net with train.init_unet False). A checkpoint in
  the workdir still wins."""
  unet, state = train_state.unet_state(config, total_steps)
  if not config.train.init_from or not config.train.init_unet:
    return unet, state
  source = loading.init_source_name(config)
  shipped = loading.init_source(config).unet_params
  start = train_state.warm_start(state.params, shipped, f'the U-Net of {source}')
  new = factory.count_params(start) - factory.count_params(shipped)
  log_main(f'[diffusion] starting from the U-Net of {source}'
           + (f'; {new:,} parameters it lacks start at their initial values' if new else ''))
  state = state.replace(params=start, opt_state=state.tx.init(start))
  if getattr(state, 'ema_params', None) is not None:
    state = state.replace(ema_params=start)
  return unet, state


def latent_conditions(data: dict, index) -> np.ndarray:
  """Condition vectors (len(index), d_text + 3) of latents-file rows: each record's prompt
  embedding, then sex, age, heart rate (built per batch: MIMIC-scale files would not hold them
  whole)."""
  return np.concatenate([data['text_embedding'][data['prompt_index'][index]],
                         data['patient'][index]], axis=1).astype(np.float32)


def latent_batch(data: dict, index, example_index) -> dict:
  """The training step's inputs for latents-file rows `index`."""
  return dict(latent=data['latent'][index], cond=latent_conditions(data, index),
              example_index=example_index)


def draw_order(heart_rate, extra_draws: int, fast_rate_bpm: float) -> np.ndarray:
  """The latents-file rows one epoch draws: every row once, then each row whose heart rate is
  above fast_rate_bpm `extra_draws` more times (diffusion.fast_rate_extra_draws)."""
  rows = np.arange(len(heart_rate))
  fast = rows[np.asarray(heart_rate) > fast_rate_bpm]
  return np.concatenate([rows, np.tile(fast, extra_draws)])


def training_step(config, unet, schedule):
  """The pmapped training step this stage runs, with the config's loss options."""
  d = config.diffusion
  return steps.make_diffusion_step(unet, schedule, d.condition_dropout, d.ema_decay,
                                   d.min_snr_gamma, d.prediction)


def train_diffusion(config, workdir, max_steps: int | None = None):
  """Stage `diffusion` on the pre-encoded training latents."""
  data = workdirs.load_latents(workdir, 'train')
  record = json.loads(str(data['conditioning']))
  check_record(record, config,
               f'the training latents in {workdirs.latents_path(workdir, "train")}')
  workdirs.write_conditioning(workdir, 'diffusion', record)
  d = config.diffusion
  batch_size = d.batch_size
  order = draw_order(data['patient'][:, 2], d.fast_rate_extra_draws, d.fast_rate_bpm)
  n = len(order)
  per_epoch = batching.steps_per_epoch(n, batch_size)
  total = per_epoch * d.epochs
  unet, state = initial_unet_state(config, total)
  lr_fn = train_state.unet_lr(config, total)
  extra = (f' ({n - len(data["latent"])} extra draws of those above {d.fast_rate_bpm:g} bpm)'
           if n > len(data['latent']) else '')
  log_main(f'[diffusion] {factory.count_params(state.params):,} parameters, '
           f'{len(data["latent"])} training latents{extra} (std {data["latent"].std():.3f}), '
           f'{total} steps of batch {batch_size} on {describe_devices()}')

  rows = batching.process_rows(batch_size)

  def batch_fn(step):
    index = order[batching.batch_indices(step, n, batch_size, config.seed)[rows]]
    return latent_batch(data, index, np.arange(batch_size)[rows])

  schedule = schedule_from_config(config)
  return run_loop('diffusion', config, workdir, state, training_step(config, unet, schedule),
                  batch_fn,
                  min(total, max_steps or total), lr_fn,
                  evaluate_fn=heldout_evaluator(config, workdir, unet, schedule, data))


def heldout_evaluator(config, workdir, unet, schedule, train_data):
  """The held-out diffusion loss on the val latents (training.heldout), or None where the
  workdir has none or train.heldout_every_steps is 0."""
  if config.train.heldout_every_steps <= 0 or not workdirs.latents_path(workdir, 'val').exists():
    return None
  val = workdirs.load_latents(workdir, 'val')

  def split(data):  # the first train.heldout_records records
    index = np.arange(min(len(data['latent']), config.train.heldout_records))
    return dict(latent=data['latent'][index], cond=latent_conditions(data, index))

  return heldout_loss.make_evaluator(unet, schedule, split(val), split(train_data),
                                     seed=config.seed + 7,
                                     batch_size=config.diffusion.batch_size,
                                     prediction=config.diffusion.prediction)
