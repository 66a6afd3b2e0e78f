"""Against overfitting a small training set: U-Net dropout, and the held-out diffusion loss
logged while training."""
import json

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from diffusets_jax import config_validation
from diffusets_jax.diffusion.schedule import linear_schedule
from diffusets_jax.models import unet
from diffusets_jax.training import heldout, losses
from diffusets_jax.diffusion import schedule
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import diffusion_stage


def small_unet(dropout):
  return unet.UNet(num_levels=3, heads=2, dropout=dropout)


def inputs(batch=3):
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, 128, 4))
  t = jnp.array([5, 400, 900][:batch])
  c = jax.random.normal(jax.random.PRNGKey(1), (batch, 8))
  return z, t, c


def test_example_dropout_known_values():
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  out = np.asarray(unet.example_dropout(jnp.ones((4, 256, 32)), keys, 0.25))
  np.testing.assert_allclose(np.unique(out), [0.0, 4.0 / 3.0])  # dropped, or kept / (1 - rate)
  assert abs((out > 0).mean() - 0.75) < 0.02            # 32,768 draws
  assert abs(out.mean() - 1.0) < 0.03                   # unchanged in expectation
  assert not np.array_equal(out[0], out[1])             # one mask per example


def test_dropout_has_no_weights_and_acts_only_with_keys():
  z, t, c = inputs()
  params = small_unet(0.3).init(jax.random.PRNGKey(2), z, t, c)['params']
  plain = small_unet(0.0).init(jax.random.PRNGKey(2), z, t, c)['params']
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(plain)
  # Without keys (sampling) the model computes what the same weights compute without dropout.
  np.testing.assert_array_equal(small_unet(0.3).apply({'params': params}, z, t, c),
                                small_unet(0.0).apply({'params': params}, z, t, c))
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  dropped = small_unet(0.3).apply({'params': params}, z, t, c, None, keys)
  assert float(jnp.abs(dropped - small_unet(0.3).apply({'params': params}, z, t, c)).max()) > 1e-2
  # An example's masks come from its own key: alone, it gets the same output as in the batch.
  alone = small_unet(0.3).apply({'params': params}, z[1:2], t[1:2], c[1:2], None, keys[1:2])
  np.testing.assert_allclose(alone[0], dropped[1], rtol=1e-4, atol=1e-5)


def test_training_loss_uses_dropout_only_when_configured():
  z, t, c = inputs()
  params = small_unet(0.3).init(jax.random.PRNGKey(2), z, t, c)['params']
  schedule = linear_schedule(1000, 0.00085, 0.012)
  keys = jax.random.split(jax.random.PRNGKey(4), 3)
  with_dropout, _ = losses.diffusion_loss(small_unet(0.3), params, schedule, z, c, keys)
  again, _ = losses.diffusion_loss(small_unet(0.3), params, schedule, z, c, keys)
  without, _ = losses.diffusion_loss(small_unet(0.0), params, schedule, z, c, keys)
  assert float(with_dropout) == float(again)           # the masks come from the example keys
  assert abs(float(with_dropout) - float(without)) > 1e-3


def test_heldout_loss_equals_the_training_loss_formula():
  z, t, c = inputs()
  model = small_unet(0.0)
  params = model.init(jax.random.PRNGKey(2), z, t, c)['params']
  schedule = linear_schedule(1000, 0.00085, 0.012)
  fn = heldout.make_loss_fn(model, schedule, z, c, draws=2, seed=5, batch_size=4)
  result = fn(params)
  # By hand: the same fixed draws, one record at a time.
  draw_t, noise = heldout.fixed_draws(3, z.shape[1:], 2, seed=5)
  by_hand = []
  for i in range(6):
    record = i // 2
    abar = schedule.alphas_cumprod[draw_t[i]]
    z_t = jnp.sqrt(abar) * z[record] + jnp.sqrt(1.0 - abar) * noise[i]
    eps = model.apply({'params': params}, z_t[None], jnp.array([draw_t[i]]), c[record:record + 1])
    by_hand.append(float(jnp.sum((eps[0] - noise[i]) ** 2)))
  np.testing.assert_allclose(result['loss'], np.mean(by_hand), rtol=1e-5)
  # Padding the last batch changes nothing; the same draws give the same value every call.
  np.testing.assert_allclose(
      heldout.make_loss_fn(model, schedule, z, c, draws=2, seed=5, batch_size=64)(params)['loss'],
      result['loss'], rtol=1e-5)
  assert fn(params) == result
  bands = [result[f'loss_t{lo}-{hi - 1}'] for lo, hi in heldout.BANDS]
  counts = [int(((draw_t >= lo) & (draw_t < hi)).sum()) for lo, hi in heldout.BANDS]
  weighted = sum(b * n for b, n in zip(bands, counts) if n)
  np.testing.assert_allclose(weighted / 6, result['loss'], rtol=1e-5)


def test_training_logs_the_heldout_loss_of_the_sampling_weights(guided_workdir):
  """The guided run (6 steps, EMA) logged its held-out loss at its last step; recomputed from
  the saved EMA weights, the val latents and the run's seed, it is the same number."""
  rows = [json.loads(line) for line in
          (guided_workdir / 'diffusion' / 'heldout.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [6]
  config = workdirs.load_config(guided_workdir)
  state = workdirs.restore_state(guided_workdir, 'diffusion', config)
  val = workdirs.load_latents(guided_workdir, 'val')
  index = np.arange(len(val['latent']))
  assert rows[0]['records'] == len(index) > 0
  from diffusets_jax.models import factory
  fn = heldout.make_loss_fn(factory.make_unet(config), schedule.schedule_from_config(config),
                            val['latent'], diffusion_stage.latent_conditions(val, index),
                            seed=config.seed + 7, batch_size=config.diffusion.batch_size)
  np.testing.assert_allclose(rows[0]['heldout_loss'], fn(state.ema_params)['loss'], rtol=1e-5)
  assert rows[0]['heldout_loss'] != pytest.approx(fn(state.params)['loss'], rel=1e-6)
  assert np.isfinite(rows[0]['train_loss']) and rows[0]['train_loss'] > 0


@pytest.mark.parametrize('field, value', [('unet.dropout', 1.0), ('unet.dropout', -0.1),
                                          ('train.heldout_every_steps', -1),
                                          ('train.heldout_records', 0)])
def test_overfitting_options_are_validated(config, field, value):
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(ValueError, match=name):
    config_validation.validate(config)


def test_draw_order_repeats_the_fast_rows():
  order = diffusion_stage.draw_order(np.array([60.0, 120.0, 100.0, 150.0]), 2, 100.0)
  np.testing.assert_array_equal(order, [0, 1, 2, 3, 1, 3, 1, 3])
  np.testing.assert_array_equal(diffusion_stage.draw_order(np.array([60.0, 120.0]), 0, 100.0),
                                [0, 1])


def test_training_draws_the_fast_latents_more_often(trained_workdir, tmp_path, monkeypatch):
  """One epoch of the diffusion stage's batches (run_loop replaced, nothing compiled) holds each
  latent above fast_rate_bpm 1 + extra_draws times and each other latent at most once."""
  import shutil
  shutil.copytree(trained_workdir / 'latents', tmp_path / 'latents')  # the stage writes beside them
  config = workdirs.load_config(trained_workdir)
  data = workdirs.load_latents(tmp_path, 'train')
  rates = data['patient'][:, 2]
  config.diffusion.fast_rate_bpm = float(np.median(rates))
  config.diffusion.fast_rate_extra_draws = 2
  config.diffusion.epochs = 1
  captured = {}
  monkeypatch.setattr(diffusion_stage, 'run_loop', lambda stage, config, workdir, state, step,
                      batch_fn, total, *args, **kwargs: captured.update(batch_fn=batch_fn,
                                                                        total=total))
  diffusion_stage.train_diffusion(config_validation.validate(config), tmp_path)
  fast = rates > config.diffusion.fast_rate_bpm
  assert 0 < fast.sum() < len(rates)
  assert captured['total'] == (len(rates) + 2 * fast.sum()) // config.diffusion.batch_size
  row_of = {latent.tobytes(): row for row, latent in enumerate(data['latent'])}
  drawn = [row_of[latent.tobytes()] for step in range(captured['total'])
           for latent in captured['batch_fn'](step)['latent']]
  counts = np.bincount(drawn, minlength=len(rates))
  assert counts[fast].max() == 3 and counts[~fast].max() == 1
  assert counts[fast].sum() > 2 * fast.sum()  # most fast rows drawn 3 times (remainder dropped)
