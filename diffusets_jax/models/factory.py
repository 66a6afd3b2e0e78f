"""Models and their example inputs, built from a config."""
import jax
import jax.numpy as jnp

from diffusets_jax.conditioning import text_encoders
from diffusets_jax.datasets.preprocessing import NUM_SAMPLES
from diffusets_jax.models import layers
from diffusets_jax.models.clip import ClipModel
from diffusets_jax.models.discriminator import PatchDiscriminator
from diffusets_jax.models.unet import UNet
from diffusets_jax.models.vae import VAE, latent_length


def compute_settings(config, precision: str | None = None) -> dict:
  """The modules' compute attributes from config.precision and config.conv_form ('auto' is
  resolved for the default backend); `precision` overrides the config's."""
  return dict(dtype=layers.compute_dtype(precision or config.precision),
              conv_form=layers.conv_form_for(config.conv_form))


def make_vae(config, precision: str | None = None) -> VAE:
  return VAE(channels=tuple(config.vae.channels), groups=config.vae.groups,
             latent_channels=config.vae.latent_channels, latent_scale=config.vae.latent_scale,
             derived_limb_leads=config.vae.derived_limb_leads,
             **compute_settings(config, precision))


def make_unet(config, precision: str | None = None) -> UNet:
  u = config.unet
  return UNet(latent_channels=config.vae.latent_channels, num_levels=u.num_levels, kernel=u.kernel,
              heads=u.heads, bottleneck_attention_hidden=u.bottleneck_attention_hidden,
              bottleneck_heads=u.bottleneck_heads,
              normalize_patient=u.normalize_patient, heart_rate_clock=u.heart_rate_clock,
              dropout=u.dropout,
              null_condition=config.diffusion.condition_dropout > 0,
              **compute_settings(config, precision))


def condition_dim(config) -> int:
  # text embedding, sex, age, heart rate
  return text_encoders.embedding_dim(config.text) + 3


def latent_shape(config) -> tuple[int, int]:
  return latent_length(NUM_SAMPLES), config.vae.latent_channels


def init_vae(config, rng):
  """Initial VAE parameters (jitted: one compile instead of one per initializer)."""
  ecg = jnp.zeros((1, NUM_SAMPLES, 12))
  noise = jnp.zeros((1,) + latent_shape(config))
  return jax.jit(make_vae(config).init)(rng, ecg, noise)['params']


def make_discriminator(config) -> PatchDiscriminator:
  return PatchDiscriminator(channels=tuple(config.vae.discriminator_channels))


def init_discriminator(config, rng):
  """Initial parameters of the VAE's patch discriminator (adversarial training only)."""
  return jax.jit(make_discriminator(config).init)(rng, jnp.zeros((1, NUM_SAMPLES, 12)))['params']


def init_unet(config, rng):
  """Initial U-Net parameters (jitted)."""
  z = jnp.zeros((1,) + latent_shape(config))
  t = jnp.zeros((1,), jnp.int32)
  c = jnp.zeros((1, condition_dim(config)))
  return jax.jit(make_unet(config).init)(rng, z, t, c)['params']


def count_params(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))


def make_clip(config, batch_axis: str | None = None) -> ClipModel:
  """The ECG-text contrastive model; `batch_axis` names the pmap axis BatchNorm syncs over."""
  c = config.clip
  return ClipModel(widths=tuple(c.widths), blocks=tuple(c.blocks), kernel=c.kernel,
                   feature_dim=c.feature_dim, text_hidden=c.text_hidden,
                   temperature=c.temperature, batch_axis=batch_axis)


def init_clip(config, rng) -> dict:
  """Initial CLIP variables: {'params': ..., 'batch_stats': ...} (jitted)."""
  ecg = jnp.zeros((1, NUM_SAMPLES, 12))
  text = jnp.zeros((1, text_encoders.embedding_dim(config.text)))
  return dict(jax.jit(make_clip(config).init)(rng, ecg, text))
