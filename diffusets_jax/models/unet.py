"""The DiffuSETS noise predictor: a 1-D U-Net over the (batch, 128, 4) latent, channels-last,
with self-attention and single-token cross-attention on the condition vector c (batch, d_c).

Submodule names follow the reference checkpoint (`downsampling_blocks_0/block/pre_shortcut_convs`
is `downsampling_blocks.0.block.pre_shortcut_convs`), including its misspelt `bottelneck`.
"""
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from diffusets_jax.conditioning import patient

from diffusets_jax.models.layers import (ConvTranspose1d, DenseParams, MultiheadAttentionParams,
                                         chain, conv, group_norm, layer_norm, mish,
                                         multihead_attention, same_conv)

NUM_TIMESTEPS = 1000
TIME_TABLE_DIM = 64
LATENT_SECONDS = 10.0  # the span of the latent's length axis at every U-Net level


def time_table(num_timesteps: int = NUM_TIMESTEPS, dim: int = TIME_TABLE_DIM) -> np.ndarray:
  """The reference's frozen sinusoidal table, (num_timesteps, dim).

  table[i, k] = sin((i + 1) * exp(-10 k / (dim/2 - 1))) for k < dim/2, cos(...) above; note the
  factor 10 (not log 10000) and i + 1, both as in the reference.
  """
  half = dim // 2
  freqs = np.exp(-10.0 * np.arange(half) / (half - 1))
  args = (np.arange(num_timesteps)[:, None] + 1.0) * freqs[None, :]
  return np.concatenate([np.sin(args), np.cos(args)], axis=1).astype(np.float32)


class TimeEmbedding(nn.Module):
  """Timestep (batch,) int -> (batch, features): frozen table -> Dense(128) -> Mish -> Dense."""
  features: int
  num_timesteps: int = NUM_TIMESTEPS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t):
    # Frozen in the reference. A converted checkpoint brings its own table (variable collection
    # 'time_tables', float32-rounded by torch); otherwise it is recomputed as a constant.
    if self.has_variable('time_tables', 'embeddings'):
      table = self.get_variable('time_tables', 'embeddings')
    else:
      table = jnp.asarray(time_table(self.num_timesteps))
    h = nn.Dense(128, dtype=self.dtype, name='fc1')(table[t])
    return nn.Dense(self.features, dtype=self.dtype, name='fc2')(mish(h))


def heart_rate_clock(heart_rate, length: int, harmonics: int):
  """sin and cos of 2 pi k f t for k = 1..harmonics, f = heart_rate / 60 Hz, t the time (s) of
  each of `length` positions across the 10 s window: (batch, length, 2 * harmonics).

  For one rate, the dot product of two positions' clocks is a sum of cos(2 pi k f (t_i - t_j)):
  a periodic function of their distance alone, peaking one beat apart, whatever the beats' phase.
  Self-attention can use it to align beats at the requested rate.
  """
  seconds = (jnp.arange(length) + 0.5) * (LATENT_SECONDS / length)
  k = jnp.arange(1, harmonics + 1)
  phase = (2 * jnp.pi * heart_rate[:, None, None] / 60.0) * seconds[None, :, None] * k
  return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)], axis=-1)


class SelfAttention(nn.Module):
  """LayerNorm -> to_q/to_k/to_v -> MultiheadAttention -> to_out, plus the input.

  Each of q, k, v passes two linear maps in a row (to_q, then the q rows of in_proj), and so does
  the output (out_proj, then to_out): each pair is multiplied into one map. Same function up to
  float rounding; in the sampler the weight products are loop-invariant and XLA computes them once.
  """
  hidden: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    h = layer_norm(name='norm', dtype=self.dtype)(x)
    in_w, in_b, out_proj = MultiheadAttentionParams(self.hidden, name='attention')()
    projections = [chain(DenseParams(self.hidden, channels, name=name)(), (w, b))
                   for name, w, b in zip(('to_q', 'to_k', 'to_v'), in_w, in_b)]
    w_qkv = jnp.concatenate([w for w, _ in projections], 1).astype(self.dtype)
    qkv = h @ w_qkv + jnp.concatenate([b for _, b in projections]).astype(self.dtype)
    out = multihead_attention(*jnp.split(qkv, 3, axis=-1), heads=self.heads)
    w_out, b_out = chain(out_proj, DenseParams(channels, self.hidden, name='to_out')())
    return x + out @ w_out.astype(self.dtype) + b_out.astype(self.dtype)


class CrossAttention(nn.Module):
  """Attention of every position on the single condition token c.

  The reference repeats c over the length axis as keys and values. All keys are then identical,
  the softmax is uniform, and each position receives exactly the value vector:
  to_out(out_proj(v rows of in_proj(to_v(LN(value_combiner(c)))))), added to x. It depends on c
  alone, so in the sampler it is computed once. The query path (normalization, to_q, to_k, the
  q/k rows of in_proj) cannot change the output; it exists for weight compatibility.
  """
  hidden: int
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, c):
    channels = x.shape[-1]
    cond = nn.Dense(channels, dtype=self.dtype, name='value_combiner')(c)
    cond = layer_norm(name='condition_normalization', dtype=self.dtype)(cond)
    if self.is_initializing():
      layer_norm(name='normalization')(x)
    DenseParams(self.hidden, channels, name='to_q')()
    DenseParams(self.hidden, channels, name='to_k')()
    to_v = DenseParams(self.hidden, channels, name='to_v')()
    in_w, in_b, out_proj = MultiheadAttentionParams(self.hidden, name='attention')()
    to_out = DenseParams(channels, self.hidden, name='to_out')()
    w, b = chain(chain(chain(to_v, (in_w[2], in_b[2])), out_proj), to_out)
    return x + (cond @ w.astype(self.dtype) + b.astype(self.dtype))[:, None, :]


def example_dropout(h, keys, rate: float):
  """Dropout with one mask per example, drawn from that example's key (keys (batch, 2)): an
  example's mask does not depend on the rest of its batch, so training does not depend on how the
  batch is split over devices. Kept activations are scaled by 1 / (1 - rate)."""
  keep = jax.vmap(lambda key: jax.random.bernoulli(key, 1.0 - rate, h.shape[1:]))(keys)
  return jnp.where(keep, h / (1.0 - rate), 0.0).astype(h.dtype)


def fold_keys(keys, data: int):
  """Each example's key folded with `data`: distinct masks per block, same per example."""
  return None if keys is None else jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, data)


class Block(nn.Module):
  """One U-Net level: time embedding, conv, self- and cross-attention, conv, residual.
  With dropout > 0 and dropout_keys given (training), dropout follows the first activation."""
  features: int
  attention_hidden: int
  heads: int
  kernel: int = 7
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, t, c, clock=None, dropout_keys=None):
    mid = (x.shape[-1] + self.features) // 2
    compute = dict(dtype=self.dtype, form=self.conv_form)
    h = x + TimeEmbedding(x.shape[-1], dtype=self.dtype, name='time_emb')(t)[:, None, :]
    if clock is not None:
      h = h + clock_projection(x.shape[-1], self.dtype)(clock)
    h = same_conv(mid, self.kernel, name='pre_shortcut_convs', **compute)(h)
    h = mish(group_norm(1, name='layer_norm1', dtype=self.dtype)(h))
    if self.dropout > 0 and dropout_keys is not None:
      h = example_dropout(h, dropout_keys, self.dropout)
    h = conv(mid, 1, 'VALID', name='shortcut_convs', **compute)(h)
    h = SelfAttention(self.attention_hidden, self.heads, self.dtype, name='self_attention')(h)
    h = CrossAttention(self.attention_hidden, self.heads, self.dtype, name='cross_attention')(h, c)
    h = layer_norm(name='attention_norm', dtype=self.dtype)(h)
    h = same_conv(self.features, self.kernel, name='post_shortcut_convs', **compute)(h)
    h = mish(group_norm(1, name='layer_norm2', dtype=self.dtype)(h))
    if self.is_initializing():
      # `block.down` is in the reference checkpoint but never used.
      conv(self.features, 3, ((1, 1),), stride=2, name='down', **compute)(h)
    # The residual is taken from x before the time embedding, as in the reference.
    return h + conv(self.features, 1, 'VALID', name='res_conv', **compute)(x)


def clock_projection(features: int, dtype):
  """Dense map of the heart-rate clock into a block's channels, initialised at zero: a U-Net
  that gains the option starts out computing what it computed without it (a warm start from
  weights trained without the clock is exact at step 0)."""
  return nn.Dense(features, dtype=dtype, kernel_init=nn.initializers.zeros,
                  name='heart_rate_clock')


class Bottleneck(nn.Module):
  attention_hidden: int = 32
  heads: int = 4
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'

  @nn.compact
  def __call__(self, x, t, c):
    channels = x.shape[-1]
    compute = dict(dtype=self.dtype, form=self.conv_form)
    h = x + TimeEmbedding(channels, dtype=self.dtype, name='time_emb')(t)[:, None, :]
    h = same_conv(channels, 3, name='bottleneck_conv1', **compute)(h)
    h = mish(group_norm(1, name='bottleneck_layer_norm1', dtype=self.dtype)(h))
    h = same_conv(channels, 3, name='bottleneck_conv1_2', **compute)(h)
    h = SelfAttention(self.attention_hidden, self.heads, self.dtype, name='self_attention')(h)
    h = CrossAttention(self.attention_hidden, self.heads, self.dtype, name='cross_attention')(h, c)
    h = layer_norm(name='attention_norm', dtype=self.dtype)(h)
    h = same_conv(channels, 3, name='bottleneck_conv2', **compute)(h)
    h = mish(group_norm(1, name='bottleneck_layer_norm2', dtype=self.dtype)(h))
    return h + x


class DownBlock(nn.Module):
  features: int
  attention_hidden: int
  heads: int
  kernel: int
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, t, c, clock=None, dropout_keys=None):
    skip = Block(self.features, self.attention_hidden, self.heads, self.kernel, self.dtype,
                 self.conv_form, self.dropout, name='block')(x, t, c, clock, dropout_keys)
    down = conv(self.features, 3, ((1, 1),), stride=2, name='down', dtype=self.dtype,
                form=self.conv_form)
    return down(skip), skip


class UpBlock(nn.Module):
  features: int
  attention_hidden: int
  heads: int
  kernel: int
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, skip, t, c, clock=None, dropout_keys=None):
    # PyTorch ConvTranspose1d(k4, s2, p1)
    x = ConvTranspose1d(x.shape[-1], self.dtype, self.conv_form, name='up')(x)
    if skip is not None:
      x = jnp.concatenate([x, skip], axis=-1)
    return Block(self.features, self.attention_hidden, self.heads, self.kernel, self.dtype,
                 self.conv_form, self.dropout, name='block')(x, t, c, clock, dropout_keys)


class UNet(nn.Module):
  """eps_hat = UNet(z_t (batch, length, latent_channels), t (batch,) int, c (batch, d_c)).

  With `num_levels` levels there are num_levels - 1 down blocks; block i maps
  latent_channels * 2**i -> latent_channels * 2**(i+1) channels and halves the length.

  Options the reference lacks (off by default, so its checkpoints load unchanged):
  - `normalize_patient`: the last three entries of c (sex code, age, heart rate) are rescaled to
    about unit range first (patient.normalize);
  - `null_condition`: a learned vector `null_condition` (d_c,), initialised at zero, replaces c
    for the examples where `drop` (batch,) bool is True: the unconditional model of
    classifier-free guidance;
  - `heart_rate_clock` = K > 0: every down and up block also adds a zero-initialised Dense map
    of K harmonics of a sinusoid at the requested heart rate, laid over the 10 s window
    (`heart_rate_clock()`), to its input beside the time embedding. Examples whose condition is
    dropped get no clock, so the unconditional model does not know the rate either.
  - `dropout` > 0: in training (`dropout_keys` (batch, 2), one key per example) every down and up
    block drops activations after its first normalisation (example_dropout); without keys
    (sampling, evaluation) nothing is dropped. It has no parameters.

  Compute settings (not part of the weights): `dtype` is the activation and matmul dtype
  (parameters stay float32, the output is float32); `conv_form` how convolutions are lowered
  (layers.CONV_FORMS).
  """
  latent_channels: int = 4
  num_levels: int = 7
  kernel: int = 7
  heads: int = 8
  bottleneck_attention_hidden: int = 32
  bottleneck_heads: int = 4
  normalize_patient: bool = False
  null_condition: bool = False
  heart_rate_clock: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32
  conv_form: str = 'matmul'

  @nn.compact
  def __call__(self, z, t, c, drop=None, dropout_keys=None):
    heart_rate = c[:, -1].astype(jnp.float32)  # bpm, before any normalisation
    if self.normalize_patient:
      c = patient.normalize(c)
    if self.null_condition:
      null = self.param('null_condition', nn.initializers.zeros, (c.shape[-1],), jnp.float32)
      if drop is not None:
        c = jnp.where(drop[:, None], null[None, :], c)
    elif drop is not None:
      raise ValueError('this U-Net has no null condition (it was built with '
                       'null_condition=False): it cannot drop the condition')
    depth = self.num_levels - 1
    if z.shape[1] % 2 ** depth:
      raise ValueError(f'latent length {z.shape[1]} must be divisible by 2**{depth} '
                       f'for a {self.num_levels}-level U-Net')
    widths = [self.latent_channels * 2 ** i for i in range(depth + 1)]
    compute = dict(dtype=self.dtype, conv_form=self.conv_form, dropout=self.dropout)

    def clock(length):
      if not self.heart_rate_clock:
        return None
      tick = heart_rate_clock(heart_rate, length, self.heart_rate_clock)
      if drop is not None:
        tick = jnp.where(drop[:, None, None], 0.0, tick)
      return tick.astype(self.dtype)

    h, skips, c = z.astype(self.dtype), [], c.astype(self.dtype)
    for i in range(depth):
      h, skip = DownBlock(widths[i + 1], 2 * widths[i], self.heads, self.kernel, **compute,
                          name=f'downsampling_blocks_{i}')(h, t, c, clock(h.shape[1]),
                                                           fold_keys(dropout_keys, i))
      skips.append(skip)
    skips.pop()  # the deepest skip is unused, as in the reference
    h = Bottleneck(self.bottleneck_attention_hidden, self.bottleneck_heads, self.dtype,
                   self.conv_form, name='bottelneck')(h, t, c)
    for j in range(depth):
      skip = skips.pop() if j > 0 else None
      in_width = h.shape[-1] * (2 if skip is not None else 1)
      h = UpBlock(widths[depth - 1 - j], 2 * in_width, self.heads, self.kernel, **compute,
                  name=f'upsampling_blocks_{j}')(h, skip, t, c, clock(2 * h.shape[1]),
                                                 fold_keys(dropout_keys, depth + j))
    layer = dict(dtype=self.dtype, form=self.conv_form)
    h = mish(same_conv(self.latent_channels, 3, name='output_conv_0', **layer)(h))
    return conv(self.latent_channels, 1, 'VALID', name='output_conv_2', **layer)(h).astype(
        jnp.float32)
