"""Train steps: pure per-device functions, and the one place where they are `pmap`ped.

Gradients and metrics are averaged over all devices (`lax.pmean` on the 'batch' axis), so with
equal per-device batches the update equals the single-device update on the whole batch.
"""
import functools

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffusets_jax.batching import AXIS
from diffusets_jax.train_state import EmaTrainState
from diffusets_jax.training import losses


def ema_update(state: EmaTrainState, decay: float) -> EmaTrainState:
  """ema <- d ema + (1 - d) params with d = min(decay, (1 + step) / (10 + step)): the usual
  warm-up, so early weights (far from the final ones) are forgotten quickly."""
  step = state.step.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, state.params)
  return state.replace(ema_params=ema)


def _apply(state, grads, metrics):
  grads = jax.lax.pmean(grads, AXIS)
  metrics = jax.lax.pmean(metrics, AXIS)
  return state.apply_gradients(grads=grads), metrics


def vae_train_step(vae, latent_noise, spectral_weight, train_encoder, state, batch, step_key,
                   kl_weight):
  keys = losses.example_keys(step_key, batch['example_index'])
  grad_fn = jax.grad(
      lambda p: losses.vae_loss(vae, p, batch['ecg'], keys, kl_weight, latent_noise,
                                spectral_weight, train_encoder),
      has_aux=True)
  grads, metrics = grad_fn(state.params)
  return _apply(state, grads, metrics)


def last_decoder_kernel(vae_params):
  return vae_params['decoder']['conv_out_25']['kernel']


def vae_adversarial_train_step(vae, discriminator, latent_noise, spectral_weight, train_encoder,
                               state, batch, step_key, kl_weight, adversarial_weight):
  """One step of the VAE against its patch discriminator, then one of the discriminator.

  The VAE's gradient is that of its reconstruction loss plus adversarial_weight x the adaptive
  weight (`losses.adaptive_adversarial_weight` at the decoder's last conv) x that of
  -mean D(reconstruction); the discriminator's is that of its hinge loss on the batch's real
  ECGs against their reconstructions. adversarial_weight 0 (before vae.adversarial_start_step)
  trains the discriminator alone."""
  keys = losses.example_keys(step_key, batch['example_index'])

  def vae_losses(params):
    loss, metrics, recon = losses.vae_reconstruction(vae, params, batch['ecg'], keys, kl_weight,
                                                     latent_noise, spectral_weight, train_encoder)
    fake = discriminator.apply({'params': state.discriminator_params}, recon)
    return (loss, losses.generator_adversarial_loss(fake)), (metrics, recon)

  (reconstruction_loss, adversarial_loss), backward, (metrics, recon) = jax.vjp(
      vae_losses, state.params, has_aux=True)
  one, zero = jnp.ones_like(reconstruction_loss), jnp.zeros_like(adversarial_loss)
  reconstruction_grads, = backward((one, zero))
  adversarial_grads, = backward((zero, one))
  scale = adversarial_weight * losses.adaptive_adversarial_weight(
      last_decoder_kernel(reconstruction_grads), last_decoder_kernel(adversarial_grads))
  grads = jax.tree_util.tree_map(lambda r, a: r + scale * a, reconstruction_grads,
                                 adversarial_grads)

  def discriminator_loss(discriminator_params):
    real = discriminator.apply({'params': discriminator_params}, batch['ecg'])
    fake = discriminator.apply({'params': discriminator_params}, jax.lax.stop_gradient(recon))
    return losses.discriminator_hinge_loss(real, fake), (jnp.mean(real), jnp.mean(fake))

  (critic_loss, (real_logit, fake_logit)), discriminator_grads = jax.value_and_grad(
      discriminator_loss, has_aux=True)(state.discriminator_params)
  metrics = dict(metrics, loss=reconstruction_loss + scale * adversarial_loss,
                 adversarial_loss=adversarial_loss, adversarial_scale=scale,
                 discriminator_loss=critic_loss,
                 logit_real=real_logit, logit_reconstructed=fake_logit)
  state = state.apply_discriminator_gradients(jax.lax.pmean(discriminator_grads, AXIS))
  return _apply(state, grads, metrics)


def diffusion_train_step(unet, schedule, condition_dropout, ema_decay, min_snr_gamma, prediction,
                         state, batch, step_key):
  keys = losses.example_keys(step_key, batch['example_index'])
  grad_fn = jax.grad(
      lambda p: losses.diffusion_loss(unet, p, schedule, batch['latent'], batch['cond'], keys,
                                      condition_dropout, min_snr_gamma, prediction),
      has_aux=True)
  grads, metrics = grad_fn(state.params)
  state, metrics = _apply(state, grads, metrics)
  if ema_decay > 0:
    state = ema_update(state, ema_decay)
  return state, metrics


def clip_train_step(clip, state, batch, step_key):
  """One contrastive step. The features of every device are gathered, so the negatives of each
  pair are the whole global batch, as on one device (each device then computes the same loss,
  and pmean of its gradients gives the global gradient)."""
  del step_key  # nothing random: no dropout, no augmentation

  def loss_fn(params):
    (ecg, text, scale), updates = clip.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['ecg'], batch['text'],
        train=True, mutable=['batch_stats'])
    ecg = jax.lax.all_gather(ecg, AXIS, tiled=True)
    text = jax.lax.all_gather(text, AXIS, tiled=True)
    loss, metrics = losses.clip_loss(ecg, text, scale)
    return loss, (metrics, updates['batch_stats'])

  grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  return _apply(state.replace(batch_stats=batch_stats), grads, metrics)


def replicate(tree):
  """Copies a pytree to every local device, laid out exactly as `pmap` lays out its outputs.

  (flax's `jax_utils.replicate` uses another mesh axis name, which makes pmap compile the step a
  second time on its second call.)
  """
  count = jax.local_device_count()
  sharding = NamedSharding(Mesh(np.array(jax.local_devices()), (AXIS,)), PartitionSpec(AXIS))
  return jax.tree_util.tree_map(
      lambda x: jax.device_put(jnp.broadcast_to(jnp.asarray(x)[None], (count,) + jnp.shape(x)),
                               sharding), tree)


def unreplicate(tree):
  """The copy on this process's first device (every device holds the same values); host numpy,
  so saving it needs no cross-process gather."""
  return jax.tree_util.tree_map(
      lambda x: np.asarray(x.addressable_data(0))[0] if isinstance(x, jax.Array) else x[0], tree)


def parallel(step_fn, num_broadcast_args: int):
  """pmap over local devices: state and batch are sharded on axis 0, the rest broadcast."""
  return jax.pmap(step_fn, axis_name=AXIS, in_axes=(0, 0) + (None,) * num_broadcast_args,
                  donate_argnums=(0,))


def make_vae_step(vae, latent_noise: float = 0.0, spectral_weight: float = 0.0,
                  train_encoder: bool = True, discriminator=None):
  """The VAE's step; with a `discriminator`, the adversarial one (one more broadcast argument:
  the adversarial weight)."""
  if discriminator is None:
    return parallel(functools.partial(vae_train_step, vae, latent_noise, spectral_weight,
                                      train_encoder), num_broadcast_args=2)
  return parallel(functools.partial(vae_adversarial_train_step, vae, discriminator, latent_noise,
                                    spectral_weight, train_encoder), num_broadcast_args=3)


def make_clip_step(clip):
  return parallel(functools.partial(clip_train_step, clip), num_broadcast_args=1)


def make_diffusion_step(unet, schedule, condition_dropout: float = 0.0, ema_decay: float = 0.0,
                        min_snr_gamma: float = 0.0, prediction: str = 'eps'):
  return parallel(functools.partial(diffusion_train_step, unet, schedule, condition_dropout,
                                    ema_decay, min_snr_gamma, prediction), num_broadcast_args=1)
