"""vae.latent_noise: the VAE's decoder trained on noisy latents, so that it tolerates the error a
denoiser leaves in them."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.models import vae as vae_lib
from diffusets_jax.training import losses


def small_vae(latent_scale=0.18215):
  return vae_lib.VAE(channels=(8, 16, 32), groups=4, latent_scale=latent_scale)


def vae_inputs(batch=3):
  ecg = jax.random.normal(jax.random.PRNGKey(0), (batch, 1024, 12)) * 0.2
  posterior = jax.random.normal(jax.random.PRNGKey(1), (batch, 128, 4))
  params = small_vae().init(jax.random.PRNGKey(2), ecg, posterior)['params']
  keys = jax.random.split(jax.random.PRNGKey(3), batch)
  return ecg, params, keys


def test_noisy_loss_matches_a_hand_computation():
  ecg, params, keys = vae_inputs()
  model = small_vae()
  loss, metrics = losses.vae_loss(model, params, ecg, keys, kl_weight=0.1, latent_noise=0.4)

  posterior = jnp.stack([jax.random.normal(k, (128, 4)) for k in keys])
  z, mean, logvar = model.apply({'params': params}, ecg, posterior, method=model.encode)
  noisy = []
  for i, key in enumerate(keys):
    sigma_key, eps_key = jax.random.split(jax.random.fold_in(key, 1))
    sigma = jax.random.uniform(sigma_key, (), maxval=0.4)
    assert 0.0 <= float(sigma) <= 0.4
    rms = jnp.sqrt(jnp.mean(z[i] ** 2))
    noisy.append(z[i] + rms * sigma * jax.random.normal(eps_key, (128, 4)))
  recon = model.apply({'params': params}, jnp.stack(noisy), method=model.decode)
  sse = jnp.mean(jnp.sum((recon - ecg) ** 2, axis=(1, 2)))
  kl = jnp.mean(losses.kl_divergence(mean, logvar))
  np.testing.assert_allclose(float(loss), float(sse + 0.1 * kl), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['latent_rms']),
                             float(jnp.mean(jnp.sqrt(jnp.mean(z ** 2, axis=(1, 2))))), rtol=1e-5)


def test_noise_changes_the_loss_only_when_asked():
  ecg, params, keys = vae_inputs()
  model = small_vae()
  plain, _ = losses.vae_loss(model, params, ecg, keys, kl_weight=0.1)
  zero, _ = losses.vae_loss(model, params, ecg, keys, kl_weight=0.1, latent_noise=0.0)
  noisy, _ = losses.vae_loss(model, params, ecg, keys, kl_weight=0.1, latent_noise=2.0)
  assert float(plain) == float(zero)
  assert abs(float(noisy) - float(plain)) > 1e-3 * abs(float(plain))


def test_noise_is_relative_to_the_latent_size():
  # Scaling the latents (latent_scale multiplies them, the decoder divides) scales the noise
  # with them, so the loss is the same: the encoder cannot outgrow the noise.
  ecg, params, keys = vae_inputs()
  small, _ = losses.vae_loss(small_vae(0.18215), params, ecg, keys, 0.1, latent_noise=0.5)
  large, _ = losses.vae_loss(small_vae(5.0), params, ecg, keys, 0.1, latent_noise=0.5)
  np.testing.assert_allclose(float(small), float(large), rtol=1e-4)


def test_noise_gradients_reach_the_encoder():
  ecg, params, keys = vae_inputs()
  model = small_vae()
  grads = jax.grad(lambda p: losses.vae_loss(model, p, ecg, keys, 0.1, latent_noise=0.5)[0])(
      params)
  leaves = jax.tree_util.tree_leaves(grads['encoder'])
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert max(float(jnp.abs(g).max()) for g in leaves) > 0


@pytest.mark.parametrize('value', [-0.1, 10.0, float('nan')])
def test_latent_noise_is_validated(config, value):
  config.vae.latent_noise = value
  with pytest.raises(ValueError, match='vae.latent_noise'):
    config_validation.validate(config)


def test_off_in_the_paper_config():
  assert diffusets.get_config().vae.latent_noise == 0.0
