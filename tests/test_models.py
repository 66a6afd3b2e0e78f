"""Model structure against the reference: parameter counts, shapes, padding, attention maths."""
import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import pytest
from flax import traverse_util

from configs import diffusets
from diffusets_jax.models import factory, layers, unet, vae


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def abstract_params(module, *args):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))['params']


def test_paper_size_parameter_counts_equal_the_reference():
  config = diffusets.get_config()
  assert factory.condition_dim(config) == 1539
  model = factory.make_vae(config)
  params = abstract_params(model, jnp.zeros((1, 1024, 12)), jnp.zeros((1, 128, 4)))
  assert count(params['encoder']) == 12_218_448
  assert count(params['decoder']) == 17_333_664
  u = abstract_params(factory.make_unet(config), jnp.zeros((1, 128, 4)),
                      jnp.zeros((1,), jnp.int32), jnp.zeros((1, 1539)))
  assert count(u) == 13_345_792  # trainable; the 13 frozen time tables are constants
  time_embeddings = [path for path, _ in jax.tree_util.tree_flatten_with_path(u)[0]
                     if any(getattr(k, 'key', '') == 'time_emb' for k in path)
                     and getattr(path[-2], 'key', '') == 'fc1' and path[-1].key == 'kernel']
  assert len(time_embeddings) == 13


def test_output_shapes():
  # Jitted: one compile per call instead of one per primitive.
  model = vae.VAE(channels=(8, 8, 16), groups=4)
  x = jnp.ones((2, 1024, 12))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x, jnp.zeros((2, 128, 4)))
  z, mean, logvar = jax.jit(lambda p, x, n: model.apply(p, x, n, method=model.encode))(
      params, x, jnp.ones((2, 128, 4)))
  assert z.shape == mean.shape == logvar.shape == (2, 128, 4)
  decode = jax.jit(lambda p, z: model.apply(p, z, method=model.decode))
  assert decode(params, z).shape == (2, 1024, 12)
  net = unet.UNet(num_levels=3)
  args = (jnp.ones((3, 128, 4)), jnp.array([0, 500, 999]), jnp.ones((3, 19)))
  p = jax.jit(net.init)(jax.random.PRNGKey(0), *args)
  assert jax.jit(net.apply)(p, *args).shape == (3, 128, 4)


def test_reparameterisation_and_latent_scale():
  model = vae.Encoder(channels=(8, 8, 8), groups=4)
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 1024, 12))
  p = model.init(jax.random.PRNGKey(0), x, jnp.zeros((1, 128, 4)))
  noise = jax.random.normal(jax.random.PRNGKey(2), (1, 128, 4))
  z, mean, logvar = model.apply(p, x, noise)
  np.testing.assert_allclose(z, (mean + jnp.exp(logvar / 2) * noise) * 0.18215, rtol=1e-5)
  assert float(logvar.min()) >= -30 and float(logvar.max()) <= 20


def test_encoder_stride2_padding_is_right_pad_by_one():
  # Hand-checked: input 1..6, kernel [1, 10, 100], stride 2, one zero on the right:
  # windows (1,2,3) (3,4,5) (5,6,0) -> 321, 543, 65.
  conv = vae.stride2_conv(1, 'down')
  x = jnp.arange(1.0, 7.0).reshape(1, 6, 1)
  params = {'params': {'kernel': jnp.array([1.0, 10.0, 100.0]).reshape(3, 1, 1),
                       'bias': jnp.zeros(1)}}
  np.testing.assert_allclose(conv.apply(params, x).ravel(), [321.0, 543.0, 65.0])
  # ... which for even lengths is the same as 'SAME' padding.
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 3))
  same = nn.Conv(5, (3,), strides=(2,), padding='SAME')
  p = same.init(jax.random.PRNGKey(1), x)
  np.testing.assert_allclose(vae.stride2_conv(5, 'down').apply(p, x), same.apply(p, x),
                             atol=1e-5)


@pytest.mark.parametrize('length', [4, 64])
def test_conv_matmul_forms_equal_flax_convs(length):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, length, 5))
  for kernel, padding, stride in [(7, ((3, 3),), 1), (3, ((1, 1),), 2), (3, ((0, 1),), 2),
                                  (1, 'VALID', 1)]:
    reference = nn.Conv(6, (kernel,), strides=(stride,), padding=padding)
    p = reference.init(jax.random.PRNGKey(1), x)
    ours = layers.Conv1d(6, kernel, padding, stride)
    np.testing.assert_allclose(ours.apply(p, x), reference.apply(p, x), atol=1e-5)
  reference = nn.ConvTranspose(6, (4,), strides=(2,), padding=((2, 2),))
  p = reference.init(jax.random.PRNGKey(1), x)
  np.testing.assert_allclose(layers.ConvTranspose1d(6).apply(p, x), reference.apply(p, x),
                             atol=1e-5)


def test_time_table_known_values():
  table = unet.time_table()
  assert table.shape == (1000, 64)
  np.testing.assert_allclose(table[0, 0], np.sin(1.0), rtol=1e-6)
  np.testing.assert_allclose(table[0, 32], np.cos(1.0), rtol=1e-6)
  np.testing.assert_allclose(table[999, 31], np.sin(1000 * np.exp(-10.0)), rtol=1e-5)
  np.testing.assert_allclose(table[9, 5], np.sin(10 * np.exp(-50 / 31)), rtol=1e-6)


def reference_mha(q_in, k_in, v_in, p, heads):
  """torch.nn.MultiheadAttention written out in numpy (batch-first)."""
  w = np.asarray(p['in_proj_kernel'])
  b = np.asarray(p['in_proj_bias'])
  h = w.shape[0]
  q, k, v = (x @ w[:, i * h:(i + 1) * h] + b[i * h:(i + 1) * h]
             for i, x in enumerate((q_in, k_in, v_in)))
  d = h // heads
  split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, d).transpose(0, 2, 1, 3)
  scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(d)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = (weights @ split(v)).transpose(0, 2, 1, 3).reshape(q.shape)
  return out @ np.asarray(p['out_proj']['kernel']) + np.asarray(p['out_proj']['bias'])


def dense(x, p):
  return x @ np.asarray(p['kernel']) + np.asarray(p['bias'])


def layer_norm(x, p):
  mean = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-5) * np.asarray(p['scale']) + np.asarray(p['bias'])


def test_self_attention_equals_unfused_reference():
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 16, 12)), np.float64)
  module = unet.SelfAttention(hidden=24, heads=8)
  p = module.init(jax.random.PRNGKey(1), jnp.asarray(x, jnp.float32))['params']
  h = layer_norm(x, p['norm'])
  q, k, v = (dense(h, p[name]) for name in ('to_q', 'to_k', 'to_v'))
  expected = x + dense(reference_mha(q, k, v, p['attention'], 8), p['to_out'])
  got = module.apply({'params': p}, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, expected, atol=1e-4)


def test_cross_attention_equals_attention_over_repeated_condition():
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 16, 12)), np.float64)
  c = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (2, 7)), np.float64)
  module = unet.CrossAttention(hidden=24, heads=8)
  p = module.init(jax.random.PRNGKey(1), jnp.asarray(x, jnp.float32),
                  jnp.asarray(c, jnp.float32))['params']
  # The reference: queries from LN(x); c repeated over length as keys and values.
  cond = layer_norm(dense(c, p['value_combiner']), p['condition_normalization'])
  cond = np.repeat(cond[:, None, :], x.shape[1], axis=1)
  q = dense(layer_norm(x, p['normalization']), p['to_q'])
  out = reference_mha(q, dense(cond, p['to_k']), dense(cond, p['to_v']), p['attention'], 8)
  expected = x + dense(out, p['to_out'])
  got = module.apply({'params': p}, jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32))
  np.testing.assert_allclose(got, expected, atol=1e-4)


def test_heart_rate_clock_similarity_depends_on_distance_and_peaks_one_beat_apart():
  # 60 bpm over 128 positions of 10 s: one beat is 12.8 positions.
  tick = np.asarray(unet.heart_rate_clock(jnp.array([60.0]), 128, harmonics=2))[0]
  assert tick.shape == (128, 4)
  similarity = tick @ tick.T
  np.testing.assert_allclose(np.diag(similarity, 5), np.diag(similarity, 5)[0], atol=1e-4)
  lag = np.argmax(similarity[0, 5:40]) + 5
  assert lag in (12, 13)
  faster = np.asarray(unet.heart_rate_clock(jnp.array([120.0]), 128, harmonics=2))[0]
  assert np.argmax((faster @ faster.T)[0, 3:10]) + 3 in (6, 7)


def test_heart_rate_clock_reaches_the_output_and_not_the_unconditional_model():
  model = unet.UNet(num_levels=3, heads=2, heart_rate_clock=2, null_condition=True)
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 128, 4))
  t = jnp.array([10, 10])
  c = jnp.zeros((2, 8)).at[:, -1].set(jnp.array([50.0, 120.0]))
  params = model.init(jax.random.PRNGKey(1), z, t, c)['params']
  with_clock = [name for name in jax.tree_util.tree_leaves_with_path(params)
                if 'heart_rate_clock' in jax.tree_util.keystr(name[0])]
  assert len(with_clock) == 2 * 2 * 2  # kernel and bias, 2 down and 2 up blocks
  # Zero-initialised: the two rates give what the same U-Net without the option gives.
  plain = unet.UNet(num_levels=3, heads=2, null_condition=True)
  flat = traverse_util.flatten_dict(params, sep='/')
  plain_params = traverse_util.unflatten_dict(
      {name: x for name, x in flat.items() if 'heart_rate_clock' not in name}, sep='/')
  np.testing.assert_allclose(model.apply({'params': params}, z, t, c),
                             plain.apply({'params': plain_params}, z, t, c), atol=1e-5)
  # Once trained (random clock weights), the rate changes the output through the clock; the
  # text and patient entries of c are equal, so the difference is the rate's alone.
  trained = jax.tree_util.tree_map_with_path(
      lambda path, x: (jax.random.normal(jax.random.PRNGKey(2), x.shape)
                       if 'heart_rate_clock' in jax.tree_util.keystr(path) else x), params)
  same_z = jnp.stack([z[0], z[0]])
  out = model.apply({'params': trained}, same_z, t, c)
  assert float(jnp.abs(out[0] - out[1]).max()) > 1e-2
  dropped = model.apply({'params': trained}, same_z, t, c, jnp.array([True, True]))
  np.testing.assert_allclose(dropped[0], dropped[1], atol=1e-6)
