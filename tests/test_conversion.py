"""Reference PyTorch checkpoints <-> Flax: every layer type against torch, name mapping, round
trip, lead order, text width, and bad files. PyTorch (CPU) is a test-only dependency."""
import json
from pathlib import Path

import numpy as np
import pytest
import jax
import jax.numpy as jnp
import flax.linen as nn

torch = pytest.importorskip('torch')
F = torch.nn.functional

from configs import diffusets  # noqa: E402
from diffusets_jax.conversion import reference_checkpoints as ref  # noqa: E402
from diffusets_jax.models import factory, layers, vae as vae_lib  # noqa: E402
from diffusets_jax.models.unet import time_table  # noqa: E402
from tests.conftest import micro_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = json.loads((ROOT / 'tests/fixtures/reference_checkpoint_layout.json').read_text())
RNG = np.random.default_rng(0)


def randn(*shape, scale=1.0):
  return (RNG.standard_normal(shape) * scale).astype(np.float32)


def torch_ncl(x):  # ours (batch, length, channels) -> torch (batch, channels, length)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))


def close(ours, theirs, atol=1e-5):
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=atol, rtol=1e-5)


@pytest.mark.parametrize('kernel, stride, padding, length', [
    (3, 1, 1, 64), (7, 1, 3, 8), (7, 1, 3, 128), (1, 1, 0, 32), (3, 2, 'right', 64),
    (3, 2, 'right', 8)])
def test_conv1d(kernel, stride, padding, length):
  w, b, x = randn(16, 8, kernel), randn(16), randn(2, length, 8)
  pads = ((0, 1),) if padding == 'right' else ((padding, padding),)
  ours = layers.Conv1d(16, kernel, pads, stride).apply(
      {'params': {'kernel': ref.to_ours('m/conv/kernel', w), 'bias': b}}, x)
  xt = torch_ncl(x)
  xt = F.pad(xt, (0, 1)) if padding == 'right' else xt
  theirs = F.conv1d(xt, torch.from_numpy(w), torch.from_numpy(b), stride,
                    0 if padding == 'right' else padding)
  close(ours, theirs.numpy().transpose(0, 2, 1))


@pytest.mark.parametrize('length', [4, 32])
def test_conv_transpose1d_k4_s2_p1(length):
  w, b, x = randn(8, 12, 4), randn(12), randn(2, length, 8)
  name = 'upsampling_blocks_0/up/kernel'
  ours = layers.ConvTranspose1d(12).apply({'params': {'kernel': ref.to_ours(name, w), 'bias': b}}, x)
  theirs = F.conv_transpose1d(torch_ncl(x), torch.from_numpy(w), torch.from_numpy(b), 2, 1)
  close(ours, theirs.numpy().transpose(0, 2, 1))
  np.testing.assert_array_equal(ref.to_reference(name, ref.to_ours(name, w)), w)


def test_linear():
  w, b, x = randn(24, 16), randn(24), randn(3, 16)
  ours = nn.Dense(24).apply({'params': {'kernel': ref.to_ours('m/fc/kernel', w), 'bias': b}}, x)
  close(ours, F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy())


@pytest.mark.parametrize('groups', [1, 32])
def test_group_norm(groups):
  scale, bias, x = randn(64), randn(64), randn(2, 20, 64, scale=3.0) + 1.0
  ours = layers.group_norm(groups).apply({'params': {'scale': scale, 'bias': bias}}, x)
  theirs = F.group_norm(torch_ncl(x), groups, torch.from_numpy(scale), torch.from_numpy(bias), 1e-5)
  close(ours, theirs.numpy().transpose(0, 2, 1))


def test_layer_norm():
  scale, bias, x = randn(48), randn(48), randn(2, 10, 48, scale=2.0)
  ours = layers.layer_norm().apply({'params': {'scale': scale, 'bias': bias}}, x)
  theirs = F.layer_norm(torch.from_numpy(x), (48,), torch.from_numpy(scale),
                        torch.from_numpy(bias), 1e-5)
  close(ours, theirs.numpy())


def test_multihead_attention():
  hidden, heads = 32, 8
  torch_mha = torch.nn.MultiheadAttention(hidden, heads, batch_first=True)
  with torch.no_grad():
    for p in torch_mha.parameters():
      p.copy_(torch.from_numpy(randn(*p.shape, scale=0.3)))
  x = randn(2, 12, hidden)
  theirs = torch_mha(*(torch.from_numpy(x),) * 3, need_weights=False)[0].detach().numpy()
  in_kernel = ref.to_ours('a/attention/in_proj_kernel', torch_mha.in_proj_weight.detach().numpy())
  in_bias = torch_mha.in_proj_bias.detach().numpy()
  q, k, v = (x @ w + b for w, b in zip(np.split(in_kernel, 3, 1), np.split(in_bias, 3)))
  out_kernel = ref.to_ours('a/attention/out_proj/kernel',
                           torch_mha.out_proj.weight.detach().numpy())
  ours = layers.multihead_attention(q, k, v, heads) @ out_kernel + torch_mha.out_proj.bias.detach(
  ).numpy()
  close(ours, theirs)


def test_nearest_upsampling_mish_and_silu():
  x = randn(2, 9, 5, scale=3.0)
  close(vae_lib.upsample2(jnp.asarray(x)),
        F.interpolate(torch_ncl(x), scale_factor=2, mode='nearest').numpy().transpose(0, 2, 1))
  close(layers.mish(jnp.asarray(x)), F.mish(torch.from_numpy(x)).numpy())
  close(nn.silu(jnp.asarray(x)), F.silu(torch.from_numpy(x)).numpy())


def torch_time_table(num_timesteps=1000, factor=10.0, offset=1) -> np.ndarray:
  """The table as the authors' code builds it: float32 torch ops, (i + offset) * exp(-factor k /
  31), sin then cos. factor=log(10000) or offset=0 give the tables it must not be confused with."""
  steps = torch.arange(num_timesteps) + offset
  freqs = torch.exp(torch.arange(32) * -(factor / 31))
  args = steps[:, None] * freqs[None, :]
  return torch.cat([torch.sin(args), torch.cos(args)], dim=1).numpy()


def random_reference_state(layout: dict) -> dict:
  """Random values with the exact reference names and shapes; time tables as the authors' code
  computes them (torch, float32), since the converter checks them."""
  table = torch_time_table()
  return {name: table.copy() if name.endswith('time_emb.embeddings') else randn(*shape, scale=0.05)
          for name, shape in layout.items()}


@pytest.fixture(scope='module')
def paper_config():
  return diffusets.get_config()


@pytest.fixture(scope='module')
def reference_unet():
  return random_reference_state(LAYOUT['unet_all.pth'])


@pytest.fixture(scope='module')
def reference_vae():
  return {part: random_reference_state(LAYOUT['vae_model.pth'][part])
          for part in ('encoder', 'decoder')}


def test_unet_round_trip_is_bit_identical(paper_config, reference_unet):
  target = jax.eval_shape(lambda: factory.init_unet(paper_config, jax.random.PRNGKey(0)))
  params = ref.unet_from_reference(reference_unet, target)
  assert factory.count_params(params) == 13_345_792
  tables = {name: reference_unet[name] for name in ref.time_table_names(target)}
  back = ref.unet_to_reference(params, tables)  # the tables read on import are written back
  assert sorted(back) == sorted(reference_unet) and len(back) == 713
  for name, tensor in reference_unet.items():
    assert back[name].dtype == np.float32 and np.array_equal(back[name], tensor), name


def test_vae_round_trip_is_bit_identical(paper_config, reference_vae):
  target = jax.eval_shape(lambda: factory.init_vae(paper_config, jax.random.PRNGKey(0)))
  back = ref.vae_to_reference(ref.vae_from_reference(reference_vae, target))
  for part in ('encoder', 'decoder'):
    assert sorted(back[part]) == sorted(reference_vae[part])
    for name, tensor in reference_vae[part].items():
      assert np.array_equal(back[part][name], tensor), f'{part}.{name}'


def test_text_width_is_inferred(reference_unet):
  assert ref.text_dim_from_unet(reference_unet) == 1536
  wide = {n: (randn(t.shape[0], 8195) if n.endswith('value_combiner.weight') else t)
          for n, t in reference_unet.items()}
  assert ref.text_dim_from_unet(wide) == 8192


def test_bad_state_dicts_are_named(paper_config, reference_unet, reference_vae):
  target = jax.eval_shape(lambda: factory.init_unet(paper_config, jax.random.PRNGKey(0)))
  broken = dict(reference_unet)
  del broken['bottelneck.bottleneck_conv1.bias']
  broken['output_conv.0.weight'] = randn(4, 4, 5)
  broken['extra.weight'] = randn(2)
  with pytest.raises(ref.LayoutError) as error:
    ref.unet_from_reference(broken, target)
  message = str(error.value)
  assert 'missing bottelneck.bottleneck_conv1.bias' in message
  assert 'misshapen output_conv.0.weight: [4, 4, 5], expected' in message
  assert 'unexpected extra.weight' in message
  vae_target = jax.eval_shape(lambda: factory.init_vae(paper_config, jax.random.PRNGKey(0)))
  with pytest.raises(ref.LayoutError, match='exactly the keys encoder and decoder'):
    ref.vae_from_reference(reference_vae['encoder'], vae_target)


def test_torch_float32_time_table_is_accepted():
  table = torch_time_table()
  error = np.abs(table.astype(np.float64) - time_table().astype(np.float64)).max()
  assert 1e-5 < error < ref.TIME_TABLE_TOLERANCE  # float32 rounding, as in real checkpoints
  ref.check_time_table('bottelneck.time_emb.embeddings', table)


@pytest.mark.parametrize('make, expected', [
    (lambda: torch_time_table(factor=float(np.log(10000.0))), 'differs .* by'),  # log-10000 freqs
    (lambda: torch_time_table(offset=0), 'differs .* by'),                        # one step off
    (lambda: torch_time_table() + np.float32(1e-2), r'differs .* by 1\.0\de-02'),
    (lambda: torch_time_table(factor=9.0), 'differs .* by'),                      # another factor
    (lambda: torch_time_table().T, r'has shape \[64, 1000\]'),                  # transposed
])
def test_wrong_time_tables_are_refused(paper_config, reference_unet, make, expected):
  target = jax.eval_shape(lambda: factory.init_unet(paper_config, jax.random.PRNGKey(0)))
  bad = dict(reference_unet)
  bad['upsampling_blocks.2.block.time_emb.embeddings'] = make()
  with pytest.raises(ref.LayoutError,
                     match=f'upsampling_blocks.2.block.time_emb.embeddings {expected}'):
    ref.unet_from_reference(bad, target)


def test_converted_model_runs_on_the_checkpoints_own_tables(paper_config, reference_unet):
  """The time embedding of the converted U-Net equals the PyTorch single-op reference that
  indexes the checkpoint's own (torch float32) table, and the whole U-Net uses those tables."""
  from diffusets_jax.models.unet import TimeEmbedding
  target = jax.eval_shape(lambda: factory.init_unet(paper_config, jax.random.PRNGKey(0)))
  params = ref.unet_from_reference(reference_unet, target)
  names = ref.time_table_names(target)
  tables = ref.time_tables_tree({n: reference_unet[n] for n in names}, target)
  np.testing.assert_array_equal(tables['bottelneck']['time_emb']['embeddings'],
                                reference_unet['bottelneck.time_emb.embeddings'])
  t = np.array([0, 1, 499, 997, 998, 999])
  prefix = 'downsampling_blocks.3.block.time_emb.'
  w1, b1 = (torch.from_numpy(reference_unet[prefix + k]) for k in ('fc1.weight', 'fc1.bias'))
  w2, b2 = (torch.from_numpy(reference_unet[prefix + k]) for k in ('fc2.weight', 'fc2.bias'))
  table = torch.from_numpy(reference_unet[prefix + 'embeddings'])
  h = F.linear(table[torch.from_numpy(t)], w1, b1)
  theirs = F.linear(F.mish(h), w2, b2).numpy()
  block = params['downsampling_blocks_3']['block']['time_emb']
  module = TimeEmbedding(features=theirs.shape[1])
  ours = module.apply({'params': block, 'time_tables': {
      'embeddings': tables['downsampling_blocks_3']['block']['time_emb']['embeddings']}},
      jnp.asarray(t))
  close(ours, theirs, atol=1e-5)
  recomputed = module.apply({'params': block}, jnp.asarray(t))
  assert np.abs(np.asarray(recomputed) - theirs).max() > 0  # the table lookup made a difference
  unet = factory.make_unet(paper_config)
  z, c = randn(2, 128, 4), randn(2, 1539)
  with_tables = unet.apply({'params': params, 'time_tables': tables}, z, jnp.array([998, 3]), c)
  without = unet.apply({'params': params}, z, jnp.array([998, 3]), c)
  assert 0 < np.abs(np.asarray(with_tables) - np.asarray(without)).max() < 1e-2


def test_converted_paper_size_models_compute_what_the_reference_architecture_computes(
    paper_config, reference_unet, reference_vae):
  """The whole-model reference: the PyTorch reference architecture
  (benchmarks/pytorch_reference) loads the reference-layout state dicts strictly, and the
  converted Flax models agree with it output for output (float32, 1e-4 relative)."""
  from benchmarks.pytorch_reference import models
  from tests.test_pytorch_reference import AGREEMENT, unet_agreement, vae_agreement
  to_torch = lambda sd: {k: torch.from_numpy(v) for k, v in sd.items()}
  torch_unet = models.unet_from_state(to_torch(reference_unet))
  encoder, decoder = models.vae_from_state({p: to_torch(sd) for p, sd in reference_vae.items()},
                                           paper_config.vae.groups)
  unet_target = jax.eval_shape(lambda: factory.init_unet(paper_config, jax.random.PRNGKey(0)))
  params = ref.unet_from_reference(reference_unet, unet_target)
  tables = ref.time_tables_tree({n: reference_unet[n] for n in ref.time_table_names(unet_target)},
                                params)
  error = unet_agreement(factory.make_unet(paper_config), {'params': params,
                         'time_tables': tables}, torch_unet, 1539, 4)
  assert error < AGREEMENT, error
  vae_target = jax.eval_shape(lambda: factory.init_vae(paper_config, jax.random.PRNGKey(0)))
  vae_params = ref.vae_from_reference(reference_vae, vae_target)
  for name, error in vae_agreement(factory.make_vae(paper_config), vae_params, encoder, decoder,
                                   4).items():
    assert error < AGREEMENT, (name, error)


def test_lead_order_is_permuted_in_the_weights():
  """Encoding a standard-order ECG with converted weights equals encoding the aVL/aVF-swapped
  ECG with the unpermuted ones; likewise for decoding. (Small VAE: same code path.)"""
  config = micro_config('unused')
  model = factory.make_vae(config)
  params = factory.init_vae(config, jax.random.PRNGKey(1))
  reference_state = ref.vae_to_reference(params)  # any state dict in the reference layout
  standard = ref.vae_from_reference(reference_state, params)
  unpermuted = ref.vae_from_reference(reference_state, params, standard_lead_order=False)
  x = jnp.asarray(randn(2, 1024, 12))
  noise = jnp.zeros((2,) + factory.latent_shape(config))
  encode = lambda p, ecg: model.apply({'params': p}, ecg, noise, method=model.encode)[1]
  swapped = x[..., ref.REFERENCE_LEAD_ORDER]
  close(encode(standard, x), np.asarray(encode(unpermuted, swapped)), atol=1e-5)
  assert not np.allclose(encode(standard, x), encode(standard, swapped), atol=1e-3)
  z = jnp.asarray(randn(2, *factory.latent_shape(config)))
  decode = lambda p: np.asarray(model.apply({'params': p}, z, method=model.decode))
  close(decode(standard)[..., ref.REFERENCE_LEAD_ORDER], decode(unpermuted))


def test_a_heart_rate_clock_cannot_be_exported_to_the_reference_layout():
  params = {'downsampling_blocks_0': {'block': {'heart_rate_clock': {
      'kernel': np.zeros((4, 4), np.float32), 'bias': np.zeros(4, np.float32)}}}}
  with pytest.raises(ValueError, match='heart_rate_clock'):
    ref.reference_equivalent_unet(params, normalize_patient=False)


def test_latent_scale_folds_into_reference_vae_weights():
  """A VAE trained at another vae.latent_scale, exported with the scale folded in, encodes to
  the same latents and decodes them to the same ECGs at the reference's 0.18215."""
  config = micro_config('unused')
  config.vae.latent_scale = 0.61
  ours = factory.make_vae(config)
  reference = vae_lib.VAE(channels=tuple(config.vae.channels), groups=config.vae.groups,
                          latent_channels=config.vae.latent_channels)
  assert reference.latent_scale == 0.18215
  params = factory.init_vae(config, jax.random.PRNGKey(1))
  folded = ref.reference_equivalent_vae(params, 0.61)
  x = jnp.asarray(randn(2, 1024, 12))
  noise = jnp.asarray(randn(2, *factory.latent_shape(config)))
  encode = lambda model, p: np.asarray(jax.jit(
      lambda p: model.apply({'params': p}, x, noise, method=model.encode)[0])(p))
  z = encode(ours, params)
  # The scale only rescales the latent: same weights, z times 0.61 / 0.18215.
  close(z, encode(reference, params) * (0.61 / 0.18215), atol=1e-5)
  close(encode(reference, folded), z, atol=1e-5)
  decode = lambda model, p: np.asarray(jax.jit(
      lambda p: model.apply({'params': p}, jnp.asarray(z), method=model.decode))(p))
  close(decode(reference, folded), decode(ours, params), atol=1e-5)


def save_pth(state, path):
  from collections import OrderedDict
  to_torch = lambda d: OrderedDict((k, to_torch(v) if isinstance(v, dict) else torch.from_numpy(v))
                                   for k, v in d.items())
  torch.save(to_torch(state), path)
  return path


def test_convert_cli_import_sample_api_and_export_round_trip(tmp_path, reference_unet,
                                                             reference_vae):
  from diffusets_jax import convert
  from diffusets_jax.generate import Generator
  from diffusets_jax.store import reference
  vae_file = save_pth(reference_vae, tmp_path / 'vae_model.pth')
  unet_file = save_pth(reference_unet, tmp_path / 'unet_all.pth')
  workdir = tmp_path / 'converted'
  assert convert.main([f'--vae={vae_file}', f'--unet={unet_file}', f'--out={workdir}']) == 0
  generator = Generator.from_workdir(workdir)
  own = generator.unet_variables['time_tables']['upsampling_blocks_0']['block']['time_emb']
  np.testing.assert_array_equal(own['embeddings'],
                                reference_unet['upsampling_blocks.0.block.time_emb.embeddings'])
  cond = np.concatenate([randn(1, 1536, scale=0.03), [[0.0, 50.0, 70.0]]], axis=1)
  ecg = generator.generate_from_conditions(cond, 'ddim', 2, batch_size=1)
  assert ecg.shape == (1, 1024, 12) and np.all(np.isfinite(ecg))
  assert (generator.config.text.encoder, generator.config.text.model, generator.config.text.dim
          ) == ('openai', 'text-embedding-ada-002', 1536)
  assert generator.prompt(['a', 'b']).count('. As') == 0  # the authors' joining, no space
  assert convert.main([f'--export_from={workdir}', f'--out={tmp_path / "back"}']) == 0
  vae_back = torch.load(tmp_path / 'back/vae_model.pth', weights_only=True)
  unet_back = torch.load(tmp_path / 'back/unet_all.pth', weights_only=True)
  assert sorted(unet_back) == sorted(reference_unet)
  for name, tensor in reference_unet.items():
    assert torch.equal(unet_back[name], torch.from_numpy(tensor)), name
  for part in ('encoder', 'decoder'):
    for name, tensor in reference_vae[part].items():
      assert torch.equal(vae_back[part][name], torch.from_numpy(tensor)), f'{part}.{name}'
  assert convert.main([f'--export_from={workdir}', f'--out={tmp_path / "st"}',
                       '--format=safetensors']) == 0
  assert reference.read_state_dict(tmp_path / 'st/vae_model.safetensors')['decoder'].keys() == \
      reference_vae['decoder'].keys()


class Payload:
  def __reduce__(self):
    return (print, ('arbitrary code ran',))


def test_convert_refuses_bad_files(tmp_path, reference_unet, reference_vae, capsys):
  from diffusets_jax import convert
  unet_file = save_pth(reference_unet, tmp_path / 'unet_all.pth')
  malicious = tmp_path / 'malicious.pth'
  torch.save({'encoder': Payload(), 'decoder': {}}, malicious)
  assert convert.main([f'--vae={malicious}', f'--unet={unet_file}', f'--out={tmp_path}/a']) == 1
  assert 'needs arbitrary code to unpickle' in capsys.readouterr().err
  flat_vae = save_pth(reference_vae['encoder'], tmp_path / 'flat.pth')
  assert convert.main([f'--vae={flat_vae}', f'--unet={unet_file}', f'--out={tmp_path}/b']) == 1
  assert 'exactly the keys encoder and decoder' in capsys.readouterr().err
  broken = dict(reference_unet)
  del broken['upsampling_blocks.0.up.bias']
  broken_file = save_pth(broken, tmp_path / 'broken.pth')
  vae_file = save_pth(reference_vae, tmp_path / 'vae.pth')
  assert convert.main([f'--vae={vae_file}', f'--unet={broken_file}', f'--out={tmp_path}/c']) == 1
  assert 'missing upsampling_blocks.0.up.bias [256]' in capsys.readouterr().err
  assert not any(p.name.startswith(('a', 'b', 'c', '.c')) and p.is_dir()
                 for p in tmp_path.iterdir())  # nothing half-written
