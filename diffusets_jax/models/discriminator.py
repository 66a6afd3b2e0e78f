"""A 1-D patch discriminator for adversarial VAE training (vae.adversarial_weight > 0).

The 1-D counterpart of the PatchGAN that latent-diffusion autoencoders train against: strided
convolutions with LeakyReLU give one real-or-reconstructed logit per patch of the ECG, so the
decoder is pushed towards realistic local shape (QRS edges, baseline texture) everywhere, not
towards one global verdict. Group norm instead of batch norm keeps it free of batch statistics
(the same under any pmap split). Not part of the reference; used only in training.
"""
from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn


class PatchDiscriminator(nn.Module):
  """(batch, length, leads) mV -> patch logits (batch, length / 2 ** len(channels), 1).

  Each logit sees about kernel x 2 ** len(channels) samples: with kernel 15 and three stages,
  about 1.2 s at 102.4 Hz, a beat with its neighbourhood."""
  channels: Sequence[int] = (64, 128, 256)
  kernel: int = 15

  @nn.compact
  def __call__(self, ecg):
    h = ecg.astype(jnp.float32)
    for index, features in enumerate(self.channels):
      h = nn.Conv(features, (self.kernel,), strides=(2,), padding='SAME', name=f'down_{index}')(h)
      if index:  # no norm on the first layer, as in PatchGAN
        h = nn.GroupNorm(num_groups=min(32, features), name=f'norm_{index}')(h)
      h = nn.leaky_relu(h, 0.2)
    return nn.Conv(1, (self.kernel,), padding='SAME', name='logits')(h)
