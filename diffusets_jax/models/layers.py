"""Building blocks shared by the VAE and the U-Net, channels-last (batch, length, channels).

PyTorch's GroupNorm and LayerNorm use eps = 1e-5; Flax defaults to 1e-6, so every norm here sets it.

Precision: parameters are always float32. `dtype` is the compute dtype of convolutions, matmuls
and activations (float32, or bfloat16 for `config.precision = 'bfloat16'`); norms take their
statistics and normalise in float32 (Flax promotes against the float32 mean and variance) and
return `dtype`; attention softmax runs in float32.
"""
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

PRECISIONS = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# How convolutions are lowered: 'matmul' runs the short ones (length <= MATMUL_CONV_MAX_LENGTH)
# and every transposed conv as matmuls over shifted views; 'xla' uses XLA's convolutions
# throughout. 'auto' (the config default) picks per backend: see conv_form_for.
CONV_FORMS = ('matmul', 'xla')


def compute_dtype(precision: str):
  if precision not in PRECISIONS:
    raise ValueError(f'precision must be one of {sorted(PRECISIONS)}, got {precision!r}')
  return PRECISIONS[precision]


def conv_form_for(conv_form: str, backend: str | None = None) -> str:
  """'auto' -> 'matmul' on CPU (measured 10-20x faster there at the U-Net's short deep levels)
  and 'xla' elsewhere (accelerators' native convolutions; benchmarks/throughput.py measures both
  forms on the backend it runs on)."""
  if conv_form == 'auto':
    return 'matmul' if (backend or jax.default_backend()) == 'cpu' else 'xla'
  if conv_form not in CONV_FORMS:
    raise ValueError(f"conv_form must be 'auto' or one of {CONV_FORMS}, got {conv_form!r}")
  return conv_form

TORCH_NORM_EPS = 1e-5


def mish(x):
  return x * jnp.tanh(jax.nn.softplus(x))


def group_norm(groups: int, name: str | None = None, dtype: Any = jnp.float32) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=groups, epsilon=TORCH_NORM_EPS, dtype=dtype, name=name)


def layer_norm(name: str | None = None, dtype: Any = jnp.float32) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=TORCH_NORM_EPS, dtype=dtype, name=name)


# Up to this input length a conv runs as one matmul over stacked shifted views (im2col): XLA's CPU
# convolution is 10-20x slower at the U-Net's short deep levels, and no faster above.
MATMUL_CONV_MAX_LENGTH = 16


class Conv1d(nn.Module):
  """1-D convolution with `nn.Conv`'s parameters: kernel (k, in, out) and bias (out,).

  `padding` is 'VALID' or ((left, right),); outputs match `nn.Conv` to float rounding.
  """
  features: int
  kernel_size: int
  padding: str | tuple = 'VALID'
  stride: int = 1
  dtype: Any = jnp.float32
  form: str = 'matmul'

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    (left, right), = ((0, 0),) if self.padding == 'VALID' else self.padding
    if self.form == 'xla' or x.shape[1] > MATMUL_CONV_MAX_LENGTH:
      y = jax.lax.conv_general_dilated(x, kernel, (self.stride,), [(left, right)],
                                       dimension_numbers=('NWC', 'WIO', 'NWC'))
      return y + bias
    x = jnp.pad(x, ((0, 0), (left, right), (0, 0)))
    out_length = (x.shape[1] - k) // self.stride + 1
    span = (out_length - 1) * self.stride + 1
    columns = jnp.concatenate([x[:, i:i + span:self.stride] for i in range(k)], axis=-1)
    return columns @ kernel.reshape(-1, self.features) + bias


def conv(features: int, kernel: int, padding, stride: int = 1, name: str | None = None,
         dtype: Any = jnp.float32, form: str = 'matmul') -> Conv1d:
  """1-D convolution; `padding` is 'VALID' or an explicit ((left, right),) pair."""
  return Conv1d(features, kernel, padding, stride, dtype, form, name=name)


class ConvTranspose1d(nn.Module):
  """`nn.ConvTranspose(features, (4,), strides=(2,), padding=((2, 2),))` (kernel (4, in, out),
  not flipped), i.e. PyTorch's ConvTranspose1d(k4, s2, p1) with a flipped kernel: length x 2.

  Form 'matmul': two matmuls, one per output phase (XLA's CPU transposed conv is slow at these
  lengths); form 'xla': `lax.conv_transpose`.
  """
  features: int
  dtype: Any = jnp.float32
  form: str = 'matmul'

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (4, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    if self.form == 'xla':
      return jax.lax.conv_transpose(x, kernel, (2,), ((2, 2),),
                                    dimension_numbers=('NWC', 'WIO', 'NWC')) + bias
    # On the zero-dilated, (2, 2)-padded input, output 2m sees x[m-1] (tap 0) and x[m] (tap 2);
    # output 2m+1 sees x[m] (tap 1) and x[m+1] (tap 3).
    padded = jnp.pad(x, ((0, 0), (1, 1), (0, 0)))
    previous, following = padded[:, :-2], padded[:, 2:]
    even = jnp.concatenate([previous, x], -1) @ jnp.concatenate([kernel[0], kernel[2]], 0)
    odd = jnp.concatenate([x, following], -1) @ jnp.concatenate([kernel[1], kernel[3]], 0)
    out = jnp.stack([even, odd], axis=2).reshape(x.shape[0], 2 * x.shape[1], self.features)
    return out + bias


def same_conv(features: int, kernel: int, name: str | None = None, dtype: Any = jnp.float32,
              form: str = 'matmul') -> Conv1d:
  """Stride-1 conv with PyTorch's symmetric padding (kernel - 1) // 2, odd kernels only."""
  pad = (kernel - 1) // 2
  return conv(features, kernel, ((pad, pad),), name=name, dtype=dtype, form=form)


class DenseParams(nn.Module):
  """The parameters of an `nn.Dense(features)` on `in_features` inputs, returned, not applied, so
  that consecutive linear maps can be multiplied into one. Same names and initialisers as Dense."""
  features: int
  in_features: int

  @nn.compact
  def __call__(self):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (self.in_features, self.features))
    return kernel, self.param('bias', nn.initializers.zeros, (self.features,))


class MultiheadAttentionParams(nn.Module):
  """The parameters of `torch.nn.MultiheadAttention(hidden, heads)`: the fused `in_proj`
  (PyTorch `in_proj_weight` (3h, h), here a kernel (h, 3h), q, k, v in that order) and
  `out_proj`. Returns ((w_q, w_k, w_v), (b_q, b_k, b_v), (w_out, b_out))."""
  hidden: int

  @nn.compact
  def __call__(self):
    h = self.hidden
    kernel = self.param('in_proj_kernel', nn.initializers.xavier_uniform(), (h, 3 * h))
    bias = self.param('in_proj_bias', nn.initializers.zeros, (3 * h,))
    out = DenseParams(h, h, name='out_proj')()
    return jnp.split(kernel, 3, axis=1), jnp.split(bias, 3), out


def chain(first, second):
  """Two linear maps (kernel, bias) applied in turn, as one: x @ w1 @ w2 + (b1 @ w2 + b2)."""
  (w1, b1), (w2, b2) = first, second
  return w1 @ w2, b1 @ w2 + b2


def multihead_attention(q, k, v, heads: int):
  """Scaled dot-product attention over already projected (batch, length, hidden) inputs."""
  def split_heads(x):
    return x.reshape(x.shape[:-1] + (heads, x.shape[-1] // heads))

  q, k, v = split_heads(q), split_heads(k), split_heads(v)
  if q.dtype == jnp.float32:
    return jax.nn.dot_product_attention(q, k, v).reshape(q.shape[:-2] + (-1,))
  # Reduced precision: the same attention written out, logits and softmax in float32. (XLA's CPU
  # compiler in jaxlib 0.10 aborts on dot_product_attention in bfloat16 with head size 1, which
  # the paper-size U-Net's first block has.)
  logits = jnp.einsum('btnh,bsnh->bnts', q, k, preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits / np.sqrt(q.shape[-1]), axis=-1).astype(v.dtype)
  return jnp.einsum('bnts,bsnh->btnh', weights, v).reshape(q.shape[:-2] + (-1,))
