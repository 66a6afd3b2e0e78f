"""Train states of the three models (VAE, U-Net, CLIP), built from a config, and warm starts.

Below training and the model store: training creates these states, the store restores
checkpoints into their shapes (`abstract_state`, which runs no initialiser).
"""
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct, traverse_util
from flax.training import train_state

from diffusets_jax import batching
from diffusets_jax.models import factory


class TrainState(train_state.TrainState):
  pass


class ClipTrainState(train_state.TrainState):
  batch_stats: Any = None  # BatchNorm running statistics (identical on every device)


class EmaTrainState(train_state.TrainState):
  ema_params: Any = None   # exponential moving average of params, updated after every step


class AdversarialVaeTrainState(train_state.TrainState):
  """The VAE's state plus its patch discriminator's parameters and optimiser state
  (vae.adversarial_weight > 0); `params` stay the VAE's alone, as every reader expects."""
  discriminator_params: Any = None
  discriminator_opt_state: Any = None
  discriminator_tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)

  def apply_discriminator_gradients(self, grads):
    updates, opt_state = self.discriminator_tx.update(grads, self.discriminator_opt_state,
                                                      self.discriminator_params)
    return self.replace(discriminator_params=optax.apply_updates(self.discriminator_params,
                                                                 updates),
                        discriminator_opt_state=opt_state)


def onecycle_schedule(total_steps: int, start_lr: float, peak_lr: float):
  """PyTorch OneCycleLR shape: cosine warm-up over the first 30 % from start_lr to peak_lr, then
  cosine annealing to start_lr / 1e4."""
  return optax.cosine_onecycle_schedule(total_steps, peak_lr, pct_start=0.3,
                                        div_factor=peak_lr / start_lr, final_div_factor=1e4)


def cosine_schedule(total_steps: int, lr: float, final_fraction: float):
  return optax.cosine_decay_schedule(lr, max(total_steps, 1), alpha=final_fraction)


def create_state(apply_fn, params, learning_rate, weight_decay, batch_stats=None,
                 ema: bool = False) -> TrainState:
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)
  if batch_stats is not None:
    return ClipTrainState.create(apply_fn=apply_fn, params=params, tx=tx, batch_stats=batch_stats)
  if ema:
    return EmaTrainState.create(apply_fn=apply_fn, params=params, tx=tx,
                                ema_params=jax.tree_util.tree_map(jnp.array, params))
  return TrainState.create(apply_fn=apply_fn, params=params, tx=tx)


def vae_lr(config, total_steps: int):
  return onecycle_schedule(total_steps, config.vae.learning_rate, config.vae.peak_learning_rate)


def unet_lr(config, total_steps: int):
  d = config.diffusion
  return cosine_schedule(total_steps, d.learning_rate, d.final_lr_fraction)


def clip_lr(config, total_steps: int):
  c = config.clip
  return cosine_schedule(total_steps, c.learning_rate, c.final_lr_fraction)


def frozen_encoder(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` for the decoder; the encoder gets no update at all (not even weight decay)."""
  return optax.multi_transform(
      dict(train=tx, frozen=optax.set_to_zero()),
      lambda params: {name: 'frozen' if name == 'encoder' else 'train' for name in params})


def vae_state(config, total_steps: int, rng=None):
  """The VAE and its train state: with vae.adversarial_weight > 0 the patch discriminator's
  parameters and optimiser ride along; with vae.train_encoder False the encoder is frozen."""
  v = config.vae
  vae = factory.make_vae(config)
  rng = rng if rng is not None else jax.random.PRNGKey(config.seed)
  params = factory.init_vae(config, rng)
  tx = optax.adamw(vae_lr(config, total_steps), weight_decay=v.weight_decay)
  if not v.train_encoder:
    tx = frozen_encoder(tx)
  if v.adversarial_weight <= 0:
    return vae, TrainState.create(apply_fn=vae.apply, params=params, tx=tx)
  discriminator_params = factory.init_discriminator(config, jax.random.fold_in(rng, 1))
  # Adam with beta1 0.5, the usual choice for GAN discriminators.
  discriminator_tx = optax.adam(v.discriminator_learning_rate, b1=0.5, b2=0.9)
  return vae, AdversarialVaeTrainState.create(
      apply_fn=vae.apply, params=params, tx=tx, discriminator_params=discriminator_params,
      discriminator_opt_state=discriminator_tx.init(discriminator_params),
      discriminator_tx=discriminator_tx)


def unet_state(config, total_steps: int, rng=None):
  unet = factory.make_unet(config)
  params = factory.init_unet(config, rng if rng is not None else jax.random.PRNGKey(config.seed))
  d = config.diffusion
  return unet, create_state(unet.apply, params, unet_lr(config, total_steps), d.weight_decay,
                            ema=d.ema_decay > 0)


def clip_state(config, total_steps: int, rng=None):
  """The CLIP model (BatchNorm synchronised over the pmap axis) and its train state."""
  clip = factory.make_clip(config, batch_axis=batching.AXIS)
  variables = factory.init_clip(config,
                                rng if rng is not None else jax.random.PRNGKey(config.seed + 3))
  return clip, create_state(clip.apply, variables['params'], clip_lr(config, total_steps),
                            config.clip.weight_decay, variables['batch_stats'])


BUILDERS = dict(vae=vae_state, diffusion=unet_state, clip=clip_state)


def abstract_state(config, stage: str):
  """Shapes and dtypes of a stage's train state without running its initialiser: a restore
  target that costs no compile."""
  return jax.eval_shape(lambda: BUILDERS[stage](config, 1)[1])


def warm_start(params, source, where: str):
  """`params` with every tensor that `source` also has replaced by the source's (shapes must
  agree); tensors only `params` has (a new option's) keep their initial values."""
  flat = traverse_util.flatten_dict(params, sep='/')
  given = traverse_util.flatten_dict(source, sep='/')
  extra = sorted(set(given) - set(flat))
  if extra:
    raise ValueError(f'{where} has parameters this config does not build ({", ".join(extra[:3])}'
                     f'{", ..." if len(extra) > 3 else ""}): its architecture differs')
  for name, value in given.items():
    if tuple(value.shape) != tuple(flat[name].shape):
      raise ValueError(f'{where}: {name} has shape {tuple(value.shape)}, this config builds '
                       f'{tuple(flat[name].shape)}')
    flat[name] = jnp.asarray(value, flat[name].dtype)
  return traverse_util.unflatten_dict(flat, sep='/')
