"""diffusion.prediction = 'v': a U-Net that predicts the velocity, trained and sampled."""
import json
import shutil

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.diffusion import prediction, samplers
from diffusets_jax.diffusion.schedule import add_noise, linear_schedule
from diffusets_jax.generate import Generator
from diffusets_jax.models import unet
from diffusets_jax.store import open_model, reference
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import diffusion_stage, losses
from tests.conftest import micro_config

SCHEDULE = linear_schedule(1000, 0.00085, 0.012)
ABAR64 = np.cumprod(1.0 - np.linspace(0.00085, 0.012, 1000))


def test_target_and_conversion_match_the_float64_formulas():
  rng = np.random.default_rng(0)
  z0, noise = rng.normal(size=(2, 3, 16, 4))
  t = np.array([1, 400, 998])
  v = np.asarray(prediction.training_target(SCHEDULE, 'v', jnp.asarray(z0, jnp.float32),
                                            jnp.asarray(noise, jnp.float32), jnp.asarray(t)))
  a = ABAR64[t][:, None, None]
  np.testing.assert_allclose(v, np.sqrt(a) * noise - np.sqrt(1 - a) * z0, atol=1e-5)
  z_t = np.sqrt(a) * z0 + np.sqrt(1 - a) * noise
  eps = prediction.to_eps(SCHEDULE, 'v', jnp.asarray(z_t, jnp.float32), jnp.asarray(v),
                          jnp.asarray(t))
  np.testing.assert_allclose(np.asarray(eps), noise, atol=1e-5)
  # 'eps' changes nothing.
  assert prediction.to_eps(SCHEDULE, 'eps', z_t, v, t) is v


def exact_v_of_a_point(x_star):
  """The exact v of data that is the single latent x_star."""
  def v_fn(z, t, cond):
    abar = SCHEDULE.alphas_cumprod[t].reshape(-1, 1, 1)
    eps = (z - jnp.sqrt(abar) * x_star) / jnp.sqrt(1.0 - abar)
    return jnp.sqrt(abar) * eps - jnp.sqrt(1.0 - abar) * x_star
  return v_fn


@pytest.mark.parametrize('sampler', ['ddim_eta0', 'ddim_eta3', 'dpmpp'])
def test_every_sampler_lands_on_the_data_with_an_exact_v_predictor(sampler):
  x_star = jax.random.normal(jax.random.PRNGKey(5), (1, 16, 4))
  v_fn = exact_v_of_a_point(x_star)
  eps_fn = lambda z, t, c: prediction.to_eps(SCHEDULE, 'v', z, v_fn(z, t, c), t)
  args = (eps_fn, lambda z: z, SCHEDULE, jnp.zeros((3, 2)), (3, 16, 4), jax.random.PRNGKey(0))
  if sampler == 'dpmpp':
    _, z0 = samplers.dpmpp_2m_sample(*args, num_steps=20, clip=10.0)
  else:
    _, z0 = samplers.ddim_sample(*args, num_steps=20, clip=10.0,
                                 eta=3.0 if sampler == 'ddim_eta3' else 0.0)
  np.testing.assert_allclose(np.asarray(z0), np.broadcast_to(x_star, (3, 16, 4)), atol=2e-3)


def test_v_loss_is_the_noise_error_over_abar():
  batch = 4
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, 32, 4))
  c = jax.random.normal(jax.random.PRNGKey(1), (batch, 8))
  model = unet.UNet(num_levels=3, heads=2)
  params = model.init(jax.random.PRNGKey(2), z, jnp.zeros(batch, jnp.int32), c)['params']
  t = jnp.array([3, 200, 600, 990])
  noise = jax.random.normal(jax.random.PRNGKey(3), z.shape)
  v_error, eps_error = losses.prediction_errors(model, params, SCHEDULE, z, c, t, noise, 'v')
  np.testing.assert_allclose(np.asarray(v_error),
                             np.asarray(eps_error) / np.asarray(SCHEDULE.alphas_cumprod[t]),
                             rtol=2e-3)
  # By hand: the output against v (an eps-model's target is the noise: the first test).
  output = model.apply({'params': params}, add_noise(SCHEDULE, z, noise, t), t, c)
  target = prediction.training_target(SCHEDULE, 'v', z, noise, t)
  np.testing.assert_allclose(np.asarray(v_error), np.sum((output - target) ** 2, axis=(1, 2)),
                             rtol=1e-5)


def test_prediction_is_validated_and_eps_in_the_paper_config(config):
  assert diffusets.get_config().diffusion.prediction == 'eps'
  config.diffusion.prediction = 'x0'
  with pytest.raises(ValueError, match='diffusion.prediction'):
    config_validation.validate(config)


@pytest.fixture(scope='module')
def v_workdir(trained_workdir, tmp_path_factory):
  """The session's VAE and latents, with a guided U-Net trained 4 steps to predict v."""
  workdir = tmp_path_factory.mktemp('v_prediction')
  for name in ('vae', 'latents'):
    shutil.copytree(trained_workdir / name, workdir / name)
  config = micro_config(json.loads((trained_workdir / 'config.json').read_text())['data'][
      'tfds_dir'])
  config.diffusion.prediction = 'v'
  config.diffusion.condition_dropout = 0.5
  config_validation.validate(config)
  workdirs.save_config(workdir, config)
  diffusion_stage.train_diffusion(config, workdir, max_steps=4)
  return workdir


def test_a_v_model_trains_samples_and_guides_in_eps(v_workdir, tmp_path):
  gen = Generator.from_workdir(v_workdir)
  assert gen.config.diffusion.prediction == 'v'
  ecg = gen.generate(['Sinus rhythm'], age=50, sex='F', heart_rate=70, num=2, sampler='ddim',
                     steps=5, seed=0)
  assert ecg.shape == (2, 1024, 12) and np.all(np.isfinite(ecg))
  # The noise predictor converts the U-Net's v; guiding the converted outputs is guiding v.
  variables = gen.unet_variables | {'params': gen.unet_params}
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 128, 4))
  t = jnp.array([700, 20])
  cond = jnp.asarray(gen.conditions([['Sinus rhythm']] * 2, [50, 60], ['F', 'M'], [70, 80]))
  raw_c = gen.unet.apply(variables, z, t, cond)
  raw_u = gen.unet.apply(variables, z, t, cond, jnp.ones(2, bool))
  guided_v = raw_c + 1.5 * (raw_c - raw_u)
  np.testing.assert_allclose(
      np.asarray(gen.noise_predictor(variables, True, 2.5)(z, t, cond)),
      np.asarray(prediction.to_eps(gen.schedule, 'v', z, guided_v, t)), atol=1e-5)
  np.testing.assert_array_equal(
      np.asarray(gen.noise_predictor(variables, False, 1.0)(z, t, cond)),
      np.asarray(prediction.to_eps(gen.schedule, 'v', z, raw_c, t)))
  # The reference samples eps-models only: a v-model is not exported to its layout.
  with pytest.raises(ValueError, match="predicts 'v'"):
    reference.export_reference(open_model(v_workdir), tmp_path / 'ref')
  assert not (tmp_path / 'ref').exists()


def test_curves_name_the_units_of_a_v_model(tmp_path, monkeypatch):
  from diffusets_jax.io import plots
  (tmp_path / 'diffusion').mkdir()
  rows = [dict(step=s, loss=100.0 / s, learning_rate=1e-4) for s in (1, 2, 3)]
  heldout = [dict(step=3, heldout_loss=40.0, train_loss=30.0, records=8, prediction='v')]
  for name, content in (('metrics.jsonl', rows), ('heldout.jsonl', heldout)):
    (tmp_path / 'diffusion' / name).write_text('\n'.join(json.dumps(r) for r in content) + '\n')
  figures = []
  monkeypatch.setattr(plots.plt, 'close', figures.append)
  plots.plot_training_curves(workdirs.training_logs(tmp_path), tmp_path / 'curves.png')
  labels = [line.get_label() for line in figures[0].axes[0].get_lines()]
  assert labels == ['loss (v-prediction error)', 'held-out noise error (val, 8 records)',
                    'training records, same draws']


def test_the_held_out_row_records_the_prediction(v_workdir):
  rows = [json.loads(line) for line in
          (v_workdir / 'diffusion' / 'heldout.jsonl').read_text().splitlines()]
  assert rows and all(row['prediction'] == 'v' for row in rows)
