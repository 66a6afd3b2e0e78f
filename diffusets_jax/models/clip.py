"""The ECG-text contrastive model of the evaluation protocol (spec section 6), channels-last.

ECG side: ResNet1d-18, as the paper states (the authors' released scripts use a METS-style Net1D
instead; its weights are not released, so features are not comparable with theirs either way):
a stride-2 stem convolution and max-pool, four stages of two basic residual blocks whose width
doubles and length halves from the second stage on, global average pooling, and a linear
projection to `feature_dim` (64). BatchNorm statistics are synchronised over the devices of a
`pmap` (`batch_axis`), so training on 1 or N devices gives the same update.

Text side: MLP(text embedding -> hidden (2048) -> ReLU -> feature_dim).

The temperature is learnable, stored as log(1 / temperature), initialised at 1 / 0.07 and capped
at 100 as in CLIP.
"""
import math

import jax.numpy as jnp
import flax.linen as nn

MAX_LOGIT_SCALE = 100.0
BATCH_NORM_EPS = 1e-5


def batch_norm(train: bool, batch_axis: str | None, name: str) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults; in training, statistics span the pmap axis."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BATCH_NORM_EPS,
                      axis_name=batch_axis if train else None, name=name)


class BasicBlock(nn.Module):
  features: int
  kernel: int
  stride: int
  batch_axis: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    norm = lambda name: batch_norm(train, self.batch_axis, name)
    pad = self.kernel // 2
    y = nn.Conv(self.features, (self.kernel,), (self.stride,), [(pad, pad)], use_bias=False,
                name='conv1')(x)
    y = nn.relu(norm('norm1')(y))
    y = nn.Conv(self.features, (self.kernel,), padding=[(pad, pad)], use_bias=False,
                name='conv2')(y)
    y = norm('norm2')(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1,), (self.stride,), use_bias=False, name='shortcut')(x)
      x = norm('shortcut_norm')(x)
    return nn.relu(x + y)


class ResNet1d(nn.Module):
  """(batch, length, leads) mV -> (batch, feature_dim)."""
  widths: tuple[int, ...] = (64, 128, 256, 512)
  blocks: tuple[int, ...] = (2, 2, 2, 2)
  kernel: int = 3
  stem_kernel: int = 7
  feature_dim: int = 64
  batch_axis: str | None = None

  @nn.compact
  def __call__(self, ecg, train: bool = False):
    pad = self.stem_kernel // 2
    x = nn.Conv(self.widths[0], (self.stem_kernel,), (2,), [(pad, pad)], use_bias=False,
                name='stem')(ecg)
    x = batch_norm(train, self.batch_axis, 'stem_norm')(x)
    x = nn.max_pool(nn.relu(x), (3,), (2,), [(1, 1)])
    for stage, (width, count) in enumerate(zip(self.widths, self.blocks)):
      for block in range(count):
        stride = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(width, self.kernel, stride, self.batch_axis,
                       name=f'stage{stage + 1}_block{block + 1}')(x, train)
    return nn.Dense(self.feature_dim, name='projection')(jnp.mean(x, axis=1))


class TextProjector(nn.Module):
  """(batch, d_text) embedding -> (batch, feature_dim)."""
  hidden: int = 2048
  feature_dim: int = 64

  @nn.compact
  def __call__(self, embedding):
    return nn.Dense(self.feature_dim, name='out')(nn.relu(nn.Dense(self.hidden, name='hidden')(
        embedding)))


class ClipModel(nn.Module):
  """Returns (ecg features, text features, logit scale); features are not normalised."""
  widths: tuple[int, ...] = (64, 128, 256, 512)
  blocks: tuple[int, ...] = (2, 2, 2, 2)
  kernel: int = 3
  feature_dim: int = 64
  text_hidden: int = 2048
  temperature: float = 0.07
  batch_axis: str | None = None

  def setup(self):
    self.ecg_encoder = ResNet1d(self.widths, self.blocks, self.kernel,
                                feature_dim=self.feature_dim, batch_axis=self.batch_axis)
    self.text_projector = TextProjector(self.text_hidden, self.feature_dim)
    self.log_logit_scale = self.param('log_logit_scale', nn.initializers.constant(
        math.log(1.0 / self.temperature)), ())

  def encode_ecg(self, ecg, train: bool = False):
    return self.ecg_encoder(ecg, train)

  def encode_text(self, embedding):
    return self.text_projector(embedding)

  def logit_scale(self):
    return jnp.minimum(jnp.exp(self.log_logit_scale), MAX_LOGIT_SCALE)

  def __call__(self, ecg, text_embedding, train: bool = False):
    return self.encode_ecg(ecg, train), self.encode_text(text_embedding), self.logit_scale()
