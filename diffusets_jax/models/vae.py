"""The DiffuSETS 1-D VAE: a 12 x 1024 ECG (mV) <-> a 4 x 128 latent, channels-last.

Submodule names end in the reference `nn.Sequential` index (`res_4` is checkpoint prefix `4.`),
so checkpoint conversion is mechanical.
"""
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from diffusets_jax.models.layers import conv, group_norm, same_conv
from diffusets_jax.models.limb_leads import INDEPENDENT_LEADS, expand_limb_leads

LATENT_SCALE = 0.18215  # the reference's (Stable Diffusion's) latent scale


class ResidualBlock(nn.Module):
  features: int
  groups: int
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'

  @nn.compact
  def __call__(self, x):
    compute = dict(dtype=self.dtype, form=self.conv_form)
    h = nn.silu(group_norm(self.groups, name='groupnorm_1', dtype=self.dtype)(x))
    h = same_conv(self.features, 3, name='conv_1', **compute)(h)
    h = nn.silu(group_norm(self.groups, name='groupnorm_2', dtype=self.dtype)(h))
    h = same_conv(self.features, 3, name='conv_2', **compute)(h)
    if x.shape[-1] != self.features:
      x = conv(self.features, 1, 'VALID', name='residual_layer', **compute)(x)
    return x + h


class AttentionBlock(nn.Module):
  """Single-head self-attention over length with a fused q/k/v projection, plus the residual."""
  groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    if self.is_initializing():
      # The reference owns this norm but never applies it; it exists only for weight compatibility.
      group_norm(self.groups, name='groupnorm')(x)
    q, k, v = jnp.split(nn.Dense(3 * channels, dtype=self.dtype, name='in_proj')(x), 3, axis=-1)
    logits = (q @ k.swapaxes(-1, -2)).astype(jnp.float32) / jnp.sqrt(channels)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # softmax in float32
    return x + nn.Dense(channels, dtype=self.dtype, name='out_proj')(weights @ v)


def stride2_conv(features: int, name: str, **compute):
  # Reference: right-pad by one, then a valid stride-2 k3 conv (= 'SAME' for even lengths).
  return conv(features, 3, ((0, 1),), stride=2, name=name, **compute)


def upsample2(x):
  return jnp.repeat(x, 2, axis=1)  # nearest neighbour along length


class Encoder(nn.Module):
  """(batch, 1024, 12) mV -> z, mean, logvar, each (batch, 128, latent_channels).

  z = (mean + exp(logvar / 2) * noise) * latent_scale (0.18215 in the reference); `noise` is
  standard normal of the latent's shape (zeros give the posterior mean), passed in so that the
  module stays deterministic.
  `dtype`/`conv_form`: compute settings as in the U-Net; z, mean and logvar are float32.
  """
  channels: Sequence[int] = (128, 256, 512)
  groups: int = 32
  latent_channels: int = 4
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'
  latent_scale: float = LATENT_SCALE

  @nn.compact
  def __call__(self, x, noise):
    c1, c2, c3 = self.channels
    g = self.groups
    layer = dict(dtype=self.dtype, form=self.conv_form)
    block = dict(dtype=self.dtype, conv_form=self.conv_form)
    h = same_conv(c1, 3, name='conv_in_0', **layer)(x)
    h = ResidualBlock(c1, g, **block, name='res_1')(h)
    h = ResidualBlock(c1, g, **block, name='res_2')(h)
    h = stride2_conv(c1, 'down_3', **layer)(h)
    h = ResidualBlock(c2, g, **block, name='res_4')(h)
    h = ResidualBlock(c2, g, **block, name='res_5')(h)
    h = stride2_conv(c2, 'down_6', **layer)(h)
    h = ResidualBlock(c3, g, **block, name='res_7')(h)
    h = ResidualBlock(c3, g, **block, name='res_8')(h)
    h = stride2_conv(c3, 'down_9', **layer)(h)
    for idx in (10, 11, 12):
      h = ResidualBlock(c3, g, **block, name=f'res_{idx}')(h)
    h = AttentionBlock(g, self.dtype, name='attn_13')(h)
    h = ResidualBlock(c3, g, **block, name='res_14')(h)
    h = nn.silu(group_norm(g, name='norm_15', dtype=self.dtype)(h))
    h = same_conv(2 * self.latent_channels, 3, name='conv_17', **layer)(h)
    h = conv(2 * self.latent_channels, 1, 'VALID', name='conv_18', **layer)(h)
    mean, logvar = jnp.split(h.astype(jnp.float32), 2, axis=-1)
    logvar = jnp.clip(logvar, -30.0, 20.0)
    z = (mean + jnp.exp(0.5 * logvar) * noise) * self.latent_scale
    return z, mean, logvar


class Decoder(nn.Module):
  """Scaled latent (batch, 128, latent_channels) -> ECG (batch, 1024, 12) in mV (float32).

  derived_limb_leads: the last conv writes only I, II and V1-V6, and III, aVR, aVL, aVF are
  computed from I and II (limb_leads.py), so every output obeys the limb-lead relations. Not the
  reference's layout (its last conv has 12 output channels)."""
  channels: Sequence[int] = (128, 256, 512)
  groups: int = 32
  leads: int = 12
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'
  latent_scale: float = LATENT_SCALE
  derived_limb_leads: bool = False

  @nn.compact
  def __call__(self, z):
    c1, c2, c3 = self.channels
    g = self.groups
    layer = dict(dtype=self.dtype, form=self.conv_form)
    block = dict(dtype=self.dtype, conv_form=self.conv_form)
    h = z / self.latent_scale
    h = conv(z.shape[-1], 1, 'VALID', name='conv_in_0', **layer)(h)
    h = same_conv(c3, 3, name='conv_1', **layer)(h)
    h = ResidualBlock(c3, g, **block, name='res_2')(h)
    h = AttentionBlock(g, self.dtype, name='attn_3')(h)
    for idx in (4, 5, 6, 7):
      h = ResidualBlock(c3, g, **block, name=f'res_{idx}')(h)
    # Three upsampling stages: (conv index, output channels), each followed by 3 residual blocks.
    for conv_idx, features in ((9, c3), (14, c2), (19, c1)):
      h = same_conv(h.shape[-1], 3, name=f'up_conv_{conv_idx}', **layer)(upsample2(h))
      for idx in range(conv_idx + 1, conv_idx + 4):
        h = ResidualBlock(features, g, **block, name=f'res_{idx}')(h)
    h = nn.silu(group_norm(g, name='norm_23', dtype=self.dtype)(h))
    if self.derived_limb_leads:
      if self.leads != 12:
        raise ValueError(f'derived limb leads need the 12 standard leads, not {self.leads}')
      independent = same_conv(len(INDEPENDENT_LEADS), 3, name='conv_out_25', **layer)(h)
      return expand_limb_leads(independent.astype(jnp.float32))
    return same_conv(self.leads, 3, name='conv_out_25', **layer)(h).astype(jnp.float32)


def latent_length(num_samples: int) -> int:
  return num_samples // 8  # three stride-2 convs


class VAE(nn.Module):
  """Encoder and decoder together; `encode`/`decode` are the entry points used by training."""
  channels: Sequence[int] = (128, 256, 512)
  groups: int = 32
  latent_channels: int = 4
  leads: int = 12
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'
  latent_scale: float = LATENT_SCALE  # not a weight: weight layouts are the same at any scale
  derived_limb_leads: bool = False     # Decoder's: 8 leads out, III, aVR, aVL, aVF from I, II

  def setup(self):
    self.encoder = Encoder(self.channels, self.groups, self.latent_channels, self.dtype,
                           self.conv_form, self.latent_scale)
    self.decoder = Decoder(self.channels, self.groups, self.leads, self.dtype, self.conv_form,
                           self.latent_scale, self.derived_limb_leads)

  def __call__(self, x, noise):
    z, mean, logvar = self.encoder(x, noise)
    return self.decoder(z), mean, logvar

  def encode(self, x, noise):
    return self.encoder(x, noise)

  def decode(self, z):
    return self.decoder(z)
