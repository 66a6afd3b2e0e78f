"""The VAE options beside the reference: derived limb leads (vae.derived_limb_leads) and the
multi-resolution spectral loss (vae.spectral_weight)."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest
import scipy.signal

from configs import diffusets
from diffusets_jax import config_validation
from diffusets_jax.conversion import reference_checkpoints as ref
from diffusets_jax.evaluation import metrics
from diffusets_jax.models import vae as vae_lib
from diffusets_jax.models import limb_leads
from diffusets_jax.models.limb_leads import expand_limb_leads
from diffusets_jax.training import losses


def small_vae(**options):
  return vae_lib.VAE(channels=(8, 16, 32), groups=4, **options)


def random_inputs(batch=3, seed=0):
  ecg = jax.random.normal(jax.random.PRNGKey(seed), (batch, 1024, 12)) * 0.2
  noise = jax.random.normal(jax.random.PRNGKey(seed + 1), (batch, 128, 4))
  return ecg, noise


def test_expanded_leads_obey_every_limb_relation():
  independent = np.random.default_rng(0).normal(size=(5, 64, 8)).astype(np.float32)
  ecg = np.asarray(expand_limb_leads(jnp.asarray(independent)))
  names = ('I', 'II', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6')
  for column, name in enumerate(names):
    np.testing.assert_array_equal(ecg[..., metrics._LEAD[name]], independent[..., column])
  for relation, result in metrics.lead_residuals(ecg).items():
    assert float(np.max(result['relative'])) < 1e-7, relation


def test_expanding_needs_eight_leads():
  with pytest.raises(ValueError, match='8 independent leads'):
    expand_limb_leads(jnp.zeros((2, 16, 12)))


def test_decoder_with_derived_limb_leads_is_consistent_and_smaller():
  ecg, noise = random_inputs()
  model = small_vae(derived_limb_leads=True)
  params = model.init(jax.random.PRNGKey(2), ecg, noise)['params']
  assert params['decoder']['conv_out_25']['kernel'].shape[-1] == 8
  recon, _, _ = model.apply({'params': params}, ecg, noise)
  assert recon.shape == (3, 1024, 12)
  for relation, result in metrics.lead_residuals(np.asarray(recon)).items():
    assert float(np.max(result['relative'])) < 1e-6, relation
  # A plain decoder's output does not obey them (so the check above can fail).
  plain = small_vae()
  plain_recon, _, _ = plain.apply({'params': plain.init(jax.random.PRNGKey(2), ecg, noise)[
      'params']}, ecg, noise)
  assert float(np.median(metrics.lead_residuals(np.asarray(plain_recon))['III = II - I'][
      'relative'])) > 1e-3


def test_derived_limb_leads_fold_into_a_reference_decoder():
  """Export: the 8-lead last conv becomes the reference's 12-channel one, and a plain decoder
  with those weights gives the same ECGs."""
  ecg, noise = random_inputs()
  model = small_vae(derived_limb_leads=True)
  params = model.init(jax.random.PRNGKey(2), ecg, noise)['params']
  folded = ref.reference_equivalent_vae(params, vae_lib.LATENT_SCALE, derived_limb_leads=True)
  assert folded['decoder']['conv_out_25']['kernel'].shape[-1] == 12
  ours, _, _ = model.apply({'params': params}, ecg, noise)
  plain, _, _ = small_vae().apply({'params': folded}, ecg, noise)
  np.testing.assert_allclose(np.asarray(plain), np.asarray(ours), atol=1e-5)


def test_projection_keeps_consistent_leads_and_is_least_squares():
  rng = np.random.default_rng(3)
  independent = rng.normal(size=(4, 32, 8))
  consistent = expand_limb_leads(independent, np)
  np.testing.assert_allclose(limb_leads.independent_from_twelve(consistent), independent,
                             atol=1e-12)
  # On inconsistent leads: what the projection removes from the six limb leads is orthogonal
  # to every consistent combination (normal equations), and the chest leads stay as they are.
  twelve = rng.normal(size=(4, 32, 12))
  projected = expand_limb_leads(limb_leads.independent_from_twelve(twelve), np)
  removed = twelve[..., :6] - projected[..., :6]
  np.testing.assert_allclose(removed @ limb_leads.LIMB_FROM_I_II, 0.0, atol=1e-12)
  assert np.abs(removed).max() > 0.1
  np.testing.assert_array_equal(projected[..., 6:], twelve[..., 6:])
  # Worked case, by hand: only lead III carries 1. A^T A = [[3.5, -1.75], [-1.75, 3.5]] and
  # A^T e_III = (-1, 1), so I = -4/21 and II = 4/21 (and III = 8/21: the fit weighs all six).
  one_in_iii = np.zeros(12)
  one_in_iii[2] = 1.0
  np.testing.assert_allclose(limb_leads.independent_from_twelve(one_in_iii)[:2],
                             [-4 / 21, 4 / 21], atol=1e-12)


def test_a_twelve_lead_decoder_folds_into_one_with_derived_limb_leads():
  ecg, noise = random_inputs()
  plain = small_vae()
  params = plain.init(jax.random.PRNGKey(4), ecg, noise)['params']
  folded = limb_leads.fold_into_decoder(jax.device_get(params))
  assert folded['decoder']['conv_out_25']['kernel'].shape[-1] == 8
  z, _, _ = plain.apply({'params': params}, ecg, noise, method=plain.encode)
  twelve = np.asarray(plain.apply({'params': params}, z, method=plain.decode))
  derived = small_vae(derived_limb_leads=True)
  out = np.asarray(derived.apply({'params': folded}, z, method=derived.decode))
  np.testing.assert_allclose(out, expand_limb_leads(limb_leads.independent_from_twelve(twelve), np),
                             atol=1e-5)
  for relation, result in metrics.lead_residuals(out).items():
    assert float(np.max(result['relative'])) < 1e-6, relation
  # The encoder is shared: the latents are the same.
  np.testing.assert_array_equal(
      np.asarray(derived.apply({'params': folded}, ecg, noise, method=derived.encode)[0]),
      np.asarray(z))
  with pytest.raises(ValueError, match='already derived'):
    limb_leads.fold_into_decoder(folded)


def numpy_spectral_distance(recon, ecg, windows):
  """A float64 rewrite of losses.spectral_distance with scipy's STFT framing."""
  total = np.zeros(len(ecg))
  for window in windows:
    hann = scipy.signal.get_window('hann', window, fftbins=True)
    magnitude = lambda x: np.abs(scipy.signal.stft(
        x, window=hann, nperseg=window, noverlap=window - window // 4, boundary=None,
        padded=False, scaling='spectrum', axis=1)[2]) * hann.sum()
    target, estimate = magnitude(np.asarray(ecg, np.float64)), magnitude(
        np.asarray(recon, np.float64))
    floor = losses.SPECTRAL_FLOOR_MV
    axes = tuple(range(1, target.ndim))
    total += np.mean(np.abs(np.log(target + floor) - np.log(estimate + floor)), axis=axes)
    total += (np.sqrt(np.sum((target - estimate) ** 2, axis=axes))
              / np.sqrt(np.sum(target ** 2, axis=axes)))
  return total


def test_spectral_distance_matches_a_float64_stft():
  rng = np.random.default_rng(1)
  ecg = rng.normal(size=(2, 1024, 12)) * 0.3
  recon = ecg + rng.normal(size=ecg.shape) * 0.05
  ours = np.asarray(losses.spectral_distance(jnp.asarray(recon, jnp.float32),
                                             jnp.asarray(ecg, jnp.float32)))
  np.testing.assert_allclose(ours, numpy_spectral_distance(recon, ecg, losses.SPECTRAL_WINDOWS),
                             rtol=2e-4)


def test_spectral_distance_is_zero_for_equal_signals_and_ignores_phase():
  t = np.arange(1024) / 102.4
  ecg = np.sin(2 * np.pi * 5 * t)[None, :, None].repeat(12, axis=2).astype(np.float32)
  assert float(losses.spectral_distance(ecg, ecg)[0]) == 0.0
  # Moved by 32 samples (a multiple of every hop) the frames are the same, bar those at the edges.
  shifted = np.roll(ecg, 32, axis=1)
  blurred = scipy.signal.savgol_filter(ecg, 31, 2, axis=1).astype(np.float32) * 0.5
  assert float(losses.spectral_distance(shifted, ecg)[0]) < 0.1 * float(
      losses.spectral_distance(blurred, ecg)[0])


def test_spectral_weight_adds_its_term_to_the_loss():
  ecg, noise = random_inputs()
  model = small_vae()
  params = model.init(jax.random.PRNGKey(2), ecg, noise)['params']
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  plain, _ = losses.vae_loss(model, params, ecg, keys, kl_weight=0.1)
  weighted, logged = losses.vae_loss(model, params, ecg, keys, kl_weight=0.1, spectral_weight=50.0)
  np.testing.assert_allclose(float(weighted), float(plain) + 50.0 * float(logged['spectral']),
                             rtol=1e-5)
  assert float(logged['spectral']) > 0


@pytest.mark.parametrize('value', [-1.0, float('nan')])
def test_spectral_weight_is_validated(config, value):
  config.vae.spectral_weight = value
  with pytest.raises(ValueError, match='vae.spectral_weight'):
    config_validation.validate(config)


def test_both_off_in_the_paper_config():
  config = diffusets.get_config()
  assert config.vae.derived_limb_leads is False
  assert config.vae.spectral_weight == 0.0


def test_a_vae_trained_with_both_options_is_checked_beside_another(config, trained_workdir,
                                                                    tmp_path):
  """`train.py --stage vae` with derived limb leads and the spectral loss, then
  scripts/vae_check.py on it and on a plain VAE, on the same records."""
  import json
  import subprocess
  import sys
  from pathlib import Path
  from diffusets_jax.training import stages
  config.vae.derived_limb_leads = True
  config.vae.spectral_weight = 10.0
  workdir = tmp_path / 'vae'
  stages.train_stages(config_validation.validate(config), workdir, 'vae')
  out = tmp_path / 'check.json'
  result = subprocess.run(
      [sys.executable, 'scripts/vae_check.py', '--vae', str(workdir), str(trained_workdir),
       '--split', 'val', '--out', str(out), '--plot', str(tmp_path / 'check.png')],
      cwd=Path(__file__).resolve().parents[1],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(out.read_text())
  derived, plain = report['results']
  assert report['records'] == 20 and derived['derived_limb_leads'] and not plain[
      'derived_limb_leads']
  assert derived['spectral_weight'] == 10.0
  assert derived['limb_residual_median']['reconstructed'] < 1e-5
  assert plain['limb_residual_median']['reconstructed'] > 1e-3
  for row in (derived, plain):
    for leads in ('12_leads', 'lead_ii'):
      assert 0 <= row['two_sample'][f'reconstructed_{leads}']['generated'] <= 1
  from matplotlib import image
  picture = image.imread(tmp_path / 'check.png')  # three records by two leads at 90 dpi
  assert picture.shape[:2] == (594, 1080)
  assert np.any(np.all(picture[..., :3] < 0.05, axis=-1))  # the real traces, in black
