"""Training losses of the reference, per batch (pure functions)."""
import jax
import jax.numpy as jnp

from diffusets_jax.diffusion import prediction as predictions
from diffusets_jax.diffusion.schedule import Schedule, add_noise


def example_keys(step_key, example_index):
  """One PRNG key per example, from its index in the global batch: the random draws of an example
  do not depend on how the batch is split over devices."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, example_index)


def kl_divergence(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over latent channels, (batch, length)."""
  return -0.5 * jnp.sum(1.0 + logvar - mean ** 2 - jnp.exp(logvar), axis=-1)


SPECTRAL_WINDOWS = (16, 32, 64, 128)   # samples: 0.16-1.25 s at 102.4 Hz, QRS to whole beats
SPECTRAL_FLOOR_MV = 1e-3               # magnitudes below this are noise, not shape


def stft_magnitude(signal, window: int):
  """|STFT| of (batch, length, leads) with a Hann window and hop window / 4, no padding:
  (batch, frames, window // 2 + 1, leads)."""
  hop = window // 4
  starts = jnp.arange(0, signal.shape[1] - window + 1, hop)
  frames = signal[:, starts[:, None] + jnp.arange(window)[None, :], :]  # (b, frames, window, leads)
  hann = 0.5 - 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(window) / window)
  return jnp.abs(jnp.fft.rfft(frames * hann[None, None, :, None], axis=2))


def spectral_distance(recon, ecg, windows=SPECTRAL_WINDOWS):
  """Multi-resolution spectral loss, (batch,): for each window length, the mean absolute
  difference of log magnitudes (floored at SPECTRAL_FLOOR_MV) plus the spectral convergence
  ||ecg| - |recon|| / ||ecg|| (Frobenius norms per example), summed over window lengths. It
  ignores phase, so it asks for the sharpness and texture that the squared error averages away."""
  total = 0.0
  for window in windows:
    target, estimate = stft_magnitude(ecg, window), stft_magnitude(recon, window)
    log_distance = jnp.mean(jnp.abs(jnp.log(target + SPECTRAL_FLOOR_MV)
                                    - jnp.log(estimate + SPECTRAL_FLOOR_MV)), axis=(1, 2, 3))
    convergence = (jnp.sqrt(jnp.sum((target - estimate) ** 2, axis=(1, 2, 3)))
                   / (jnp.sqrt(jnp.sum(target ** 2, axis=(1, 2, 3))) + 1e-8))
    total = total + log_distance + convergence
  return total


def vae_loss(vae, params, ecg, keys, kl_weight, latent_noise: float = 0.0,
             spectral_weight: float = 0.0, train_encoder: bool = True):
  """Sum of squared error over all 1024 x 12 values, batch mean, plus kl_weight * the KL averaged
  over batch and latent positions, plus spectral_weight * `spectral_distance` (batch mean; 0, the
  reference, adds none). Returns (loss, metrics).

  latent_noise > 0 decodes the posterior sample plus Gaussian noise of std sigma x the example's
  latent RMS, sigma ~ U(0, latent_noise) per example, so the decoder learns to tolerate latent
  error of the size a denoiser leaves and the encoder to write the beats where such error cannot
  erase them. The RMS is held constant in the gradient: scaling the latents up buys nothing.
  0 (the reference) adds none. train_encoder False: no gradient reaches the encoder (its latents
  stay those a trained U-Net knows)."""
  loss, metrics, _ = vae_reconstruction(vae, params, ecg, keys, kl_weight, latent_noise,
                                        spectral_weight, train_encoder)
  return loss, metrics


def vae_reconstruction(vae, params, ecg, keys, kl_weight, latent_noise: float = 0.0,
                       spectral_weight: float = 0.0, train_encoder: bool = True):
  """`vae_loss` with the reconstruction: (loss, metrics, reconstructed ECGs)."""
  def posterior_noise(key):
    return jax.random.normal(key, (ecg.shape[1] // 8, vae.latent_channels))

  noise = jax.vmap(posterior_noise)(keys)
  z, mean, logvar = vae.apply({'params': params}, ecg, noise, method=vae.encode)
  if not train_encoder:
    z = jax.lax.stop_gradient(z)
  metrics = {}
  if latent_noise > 0:
    rms = jax.lax.stop_gradient(jnp.sqrt(jnp.mean(z ** 2, axis=(1, 2), keepdims=True)))

    def decoder_noise(key):
      sigma_key, eps_key = jax.random.split(jax.random.fold_in(key, 1))
      sigma = jax.random.uniform(sigma_key, (), maxval=latent_noise)
      return sigma * jax.random.normal(eps_key, z.shape[1:])

    z = z + rms * jax.vmap(decoder_noise)(keys)
    metrics['latent_rms'] = jnp.mean(rms)
  recon = vae.apply({'params': params}, z, method=vae.decode)
  sse = jnp.mean(jnp.sum((recon - ecg) ** 2, axis=(1, 2)))
  kl = jnp.mean(kl_divergence(mean, logvar))
  loss = sse + (kl_weight * kl if train_encoder else 0.0)
  if spectral_weight > 0:
    spectral = jnp.mean(spectral_distance(recon, ecg))
    loss = loss + spectral_weight * spectral
    metrics['spectral'] = spectral
  mae = jnp.mean(jnp.abs(recon - ecg))
  return loss, dict(loss=loss, recon_sse=sse, kl=kl, recon_mae_mv=mae, **metrics), recon


def discriminator_hinge_loss(real_logits, fake_logits):
  """The patch discriminator's hinge loss: mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
  return (jnp.mean(jax.nn.relu(1.0 - real_logits.astype(jnp.float32)))
          + jnp.mean(jax.nn.relu(1.0 + fake_logits.astype(jnp.float32))))


def generator_adversarial_loss(fake_logits):
  """What the decoder minimises against the discriminator: -mean D(reconstruction)."""
  return -jnp.mean(fake_logits.astype(jnp.float32))


MAX_ADAPTIVE_WEIGHT = 1e4


def adaptive_adversarial_weight(reconstruction_grad, adversarial_grad):
  """||grad of the reconstruction loss|| / ||grad of the adversarial loss|| at one tensor (the
  decoder's last conv kernel), clipped to [0, MAX_ADAPTIVE_WEIGHT] and held constant: it
  balances the two terms whatever the loss's units (Esser et al. 2021, taming transformers)."""
  ratio = (jnp.linalg.norm(reconstruction_grad.ravel())
           / (jnp.linalg.norm(adversarial_grad.ravel()) + 1e-4))
  return jax.lax.stop_gradient(jnp.clip(ratio, 0.0, MAX_ADAPTIVE_WEIGHT))


def min_snr_weight(schedule: Schedule, t, gamma: float):
  """Min-SNR-gamma weight of the noise-prediction loss at timestep t (Hang et al. 2023):
  min(SNR_t, gamma) / SNR_t with SNR_t = abar_t / (1 - abar_t). It is 1 where SNR_t <= gamma and
  falls as gamma / SNR_t at the low-noise end, whose noise errors otherwise dominate the loss."""
  abar = schedule.alphas_cumprod[t]
  snr = abar / (1.0 - abar)
  return jnp.minimum(snr, gamma) / snr


def diffusion_loss(unet, params, schedule: Schedule, z0, cond, keys,
                   condition_dropout: float = 0.0, min_snr_gamma: float = 0.0,
                   prediction: str = 'eps'):
  """Denoising loss: t ~ U{1..998} (the reference's randint(1, 999)), sum of squared error of
  the U-Net's output against its target (`prediction`: the noise, or v) over the latent, batch
  mean. With condition_dropout > 0 that share of the examples (drawn per example) gets the
  U-Net's null condition (classifier-free guidance). A U-Net with dropout gets one dropout key
  per example. min_snr_gamma > 0 weighs each example's error by `min_snr_weight` (0, the
  reference: unweighted); `unweighted_loss` is then logged beside it. Returns (loss, metrics)."""
  def draw(key):
    t_key, noise_key = jax.random.split(key)
    drop_key = jax.random.fold_in(key, 2)  # leaves the draws of t and noise as they were
    return (jax.random.randint(t_key, (), 1, 999),
            jax.random.normal(noise_key, z0.shape[1:]),
            jax.random.bernoulli(drop_key, condition_dropout),
            jax.random.fold_in(key, 3))

  t, noise, drop, dropout_keys = jax.vmap(draw)(keys)
  error, _ = prediction_errors(unet, params, schedule, z0, cond, t, noise, prediction,
                               drop if condition_dropout > 0 else None,
                               dropout_keys if unet.dropout > 0 else None)
  if min_snr_gamma <= 0:
    loss = jnp.mean(error)
    return loss, dict(loss=loss)
  loss = jnp.mean(min_snr_weight(schedule, t, min_snr_gamma) * error)
  return loss, dict(loss=loss, unweighted_loss=jnp.mean(error))


def prediction_errors(unet, params, schedule: Schedule, z0, cond, t, noise,
                      prediction: str = 'eps', drop=None, dropout_keys=None):
  """Per example (batch,), each summed over the latent: the squared error of the U-Net's output
  against its training target at (t, noise), and that of the noise prediction it implies (the
  same for an eps-model; for any model, comparable across predictions)."""
  z_t = add_noise(schedule, z0, noise, t)
  output = unet.apply({'params': params}, z_t, t, cond, drop, dropout_keys)
  target = predictions.training_target(schedule, prediction, z0, noise, t)
  eps_hat = predictions.to_eps(schedule, prediction, z_t, output, t)
  return (jnp.sum((output - target) ** 2, axis=(1, 2)),
          jnp.sum((eps_hat - noise) ** 2, axis=(1, 2)))


def noise_prediction_error(unet, params, schedule: Schedule, z0, cond, t, noise,
                           prediction: str = 'eps'):
  """Per example (batch,): the squared error of the noise prediction the U-Net implies at
  (t, noise), summed over the latent (no null condition, no dropout)."""
  return prediction_errors(unet, params, schedule, z0, cond, t, noise, prediction)[1]


def clip_loss(ecg_features, text_features, logit_scale):
  """Symmetric InfoNCE over a batch of matched (ECG, text) pairs: cross-entropy of the scaled
  cosine similarities, ECG -> text and text -> ECG, averaged. Returns (loss, metrics)."""
  ecg = ecg_features / jnp.linalg.norm(ecg_features, axis=-1, keepdims=True)
  text = text_features / jnp.linalg.norm(text_features, axis=-1, keepdims=True)
  logits = logit_scale * ecg @ text.T
  labels = jnp.arange(logits.shape[0])
  ecg_to_text = -jnp.mean(jax.nn.log_softmax(logits, axis=1)[labels, labels])
  text_to_ecg = -jnp.mean(jax.nn.log_softmax(logits, axis=0)[labels, labels])
  loss = 0.5 * (ecg_to_text + text_to_ecg)
  accuracy = jnp.mean(jnp.argmax(logits, axis=1) == labels)
  return loss, dict(loss=loss, retrieval_accuracy=accuracy, logit_scale=logit_scale)
