"""diffusion.min_snr_gamma: Min-SNR-gamma weights on the noise-prediction loss."""
import json

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax import batching
from diffusets_jax.diffusion.schedule import linear_schedule
from diffusets_jax.io import plots
from diffusets_jax.models import factory, unet
from diffusets_jax.training import losses, steps
from diffusets_jax import train_state
from diffusets_jax.diffusion import schedule
from diffusets_jax.store import workdir as workdirs

SCHEDULE = linear_schedule(1000, 0.00085, 0.012)


def snr_in_float64(t):
  abar = np.cumprod(1.0 - np.linspace(0.00085, 0.012, 1000))[t]
  return abar / (1.0 - abar)


def test_weight_known_values():
  t = jnp.array([1, 10, 60, 119, 121, 400, 998])
  weight = np.asarray(losses.min_snr_weight(SCHEDULE, t, 5.0))
  snr = snr_in_float64(np.asarray(t))
  np.testing.assert_allclose(weight, np.minimum(snr, 5.0) / snr, rtol=1e-4)
  # SNR falls through 5 between t = 119 and 121: full weight from there on, less before.
  assert weight[3] < 1.0 and np.all(weight[4:] == 1.0)
  np.testing.assert_allclose(weight[0], 5.0 / 583.65, rtol=1e-3)
  assert np.all(np.diff(weight) >= 0)


def inputs(batch=4):
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, 128, 4))
  c = jax.random.normal(jax.random.PRNGKey(1), (batch, 8))
  model = unet.UNet(num_levels=3, heads=2)
  params = model.init(jax.random.PRNGKey(2), z, jnp.zeros(batch, jnp.int32), c)['params']
  keys = jax.random.split(jax.random.PRNGKey(3), batch)
  return model, params, z, c, keys


def test_weighted_loss_matches_a_hand_computation():
  model, params, z, c, keys = inputs()
  loss, metrics = jax.jit(lambda p: losses.diffusion_loss(model, p, SCHEDULE, z, c, keys,
                                                          min_snr_gamma=5.0))(params)
  # By hand: each example's draws of t and noise from its key, as the loss draws them (the
  # U-Net compiled once: run op by op it takes most of a minute).
  apply = jax.jit(lambda z_t, t, c: model.apply({'params': params}, z_t, t, c))
  weighted, plain, drawn = [], [], []
  for i, key in enumerate(keys):
    t_key, noise_key = jax.random.split(key)
    t = jax.random.randint(t_key, (), 1, 999)
    drawn.append(int(t))
    noise = jax.random.normal(noise_key, (128, 4))
    abar = float(SCHEDULE.alphas_cumprod[t])
    z_t = np.sqrt(abar) * z[i] + np.sqrt(1.0 - abar) * noise
    eps = apply(z_t[None], t[None], c[i:i + 1])[0]
    error = float(jnp.sum((eps - noise) ** 2))
    snr = abar / (1.0 - abar)
    weighted.append(min(snr, 5.0) / snr * error)
    plain.append(error)
  np.testing.assert_allclose(float(loss), np.mean(weighted), rtol=1e-4)
  np.testing.assert_allclose(float(metrics['unweighted_loss']), np.mean(plain), rtol=1e-4)
  assert min(drawn) < 120 < max(drawn)  # both a down-weighted and a fully weighted example
  assert float(loss) < float(metrics['unweighted_loss'])


def test_zero_gamma_is_the_reference_loss():
  model, params, z, c, keys = inputs()
  loss = jax.jit(lambda gamma: losses.diffusion_loss(
      model, params, SCHEDULE, z, c, keys, **({} if gamma is None else dict(min_snr_gamma=gamma))),
      static_argnums=0)
  reference, metrics = loss(None)
  off, _ = loss(0.0)
  # A gamma above every SNR of the schedule weighs each example by 1.
  huge, _ = loss(1e4)
  assert float(off) == float(reference) and set(metrics) == {'loss'}
  np.testing.assert_allclose(float(huge), float(reference), rtol=1e-5)


def test_train_step_optimises_the_weighted_loss(config):
  config.diffusion.min_snr_gamma = 5.0
  model, state = train_state.unet_state(config, 10)
  noise_schedule = schedule.schedule_from_config(config)
  p_step = steps.make_diffusion_step(model, noise_schedule, min_snr_gamma=5.0)
  rng = np.random.default_rng(0)
  batch = 4
  latent = rng.standard_normal((batch,) + factory.latent_shape(config)).astype(np.float32)
  cond = rng.standard_normal((batch, factory.condition_dim(config))).astype(np.float32)
  data = batching.shard(dict(latent=latent, cond=cond, example_index=np.arange(batch)))
  before = jax.tree_util.tree_leaves(state.params)
  new_state, metrics = p_step(steps.replicate(state), data, jax.random.PRNGKey(0))
  assert 0 < float(metrics['loss'][0]) <= float(metrics['unweighted_loss'][0])
  after = jax.tree_util.tree_leaves(steps.unreplicate(new_state).params)
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize('value', [-1.0, float('nan')])
def test_gamma_is_validated(config, value):
  config.diffusion.min_snr_gamma = value
  with pytest.raises(ValueError, match='diffusion.min_snr_gamma'):
    config_validation.validate(config)


def test_off_in_the_paper_config():
  assert diffusets.get_config().diffusion.min_snr_gamma == 0.0


def test_curves_show_the_weighted_and_unweighted_loss(tmp_path, monkeypatch):
  (tmp_path / 'diffusion').mkdir()
  rows = [dict(step=s, loss=10.0 / s, unweighted_loss=20.0 / s, learning_rate=1e-4)
          for s in (1, 2, 3)]
  (tmp_path / 'diffusion' / 'metrics.jsonl').write_text(
      '\n'.join(json.dumps(r) for r in rows) + '\n')
  figures = []
  monkeypatch.setattr(plots.plt, 'close', figures.append)
  plots.plot_training_curves(workdirs.training_logs(tmp_path), tmp_path / 'curves.png')
  lines = figures[0].axes[0].get_lines()
  assert [line.get_label() for line in lines] == ['loss (Min-SNR weighted)', 'unweighted_loss']
  np.testing.assert_allclose(lines[1].get_ydata(), [20.0, 10.0, 20.0 / 3])
