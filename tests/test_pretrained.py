"""The pretrained model shipped in the package: its files, checksum, shapes, and that it
generates finite ECGs of the right shape from the Python API and from sample.py."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from diffusets_jax import train_state
from diffusets_jax.generate import Generator
from diffusets_jax.models import factory
from diffusets_jax.store import exported, files, loading, open_model
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import diffusion_stage, stages

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = exported.PRETRAINED_FOLDER
MANIFEST = json.loads((SHIPPED / 'manifest.json').read_text())
GOLDEN = ROOT / 'tests' / 'fixtures' / 'pretrained_samples_golden.npz'


def test_files_match_the_manifest():
  weights = SHIPPED / exported.WEIGHTS
  assert weights.stat().st_size == MANIFEST['bytes'] <= exported.MAX_BYTES
  assert files.sha256(weights) == MANIFEST['sha256']
  tensors = load_file(str(weights))
  assert {name: list(t.shape) for name, t in tensors.items()} == MANIFEST['shapes']
  assert all(t.dtype == np.float32 and np.all(np.isfinite(t)) for t in tensors.values())


def test_weights_fit_the_recorded_config():
  model = open_model('pretrained')
  config, vae_params, unet_params = model.config, model.vae_params, model.unet_params
  import jax
  vae_shapes = jax.eval_shape(lambda: factory.init_vae(config, jax.random.PRNGKey(0)))
  unet_shapes = jax.eval_shape(lambda: factory.init_unet(config, jax.random.PRNGKey(0)))
  same = lambda a, b: jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
      x.shape == y.shape for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
  assert same(vae_params, vae_shapes) and same(unet_params, unet_shapes)
  assert factory.count_params(unet_params) == MANIFEST['parameters']['unet']
  assert model.conditioning['text']['encoder'] == config.text.encoder


def test_a_damaged_file_is_refused(tmp_path):
  for name in ('config.json', 'conditioning.json', 'manifest.json'):
    (tmp_path / name).write_text((SHIPPED / name).read_text())
  data = bytearray((SHIPPED / exported.WEIGHTS).read_bytes())
  data[-1] ^= 1
  (tmp_path / exported.WEIGHTS).write_bytes(bytes(data))
  with pytest.raises(ValueError, match='does not match the SHA-256'):
    open_model(tmp_path)


def test_generates_finite_ecgs_of_the_right_shape():
  gen = Generator.pretrained()
  ecgs = gen.generate(['Sinus bradycardia'], age=60, sex='F', heart_rate=50, num=2,
                      sampler='ddim', steps=10, seed=0)
  assert ecgs.shape == (2, 1024, 12) and np.all(np.isfinite(ecgs))
  assert 0.02 < float(np.abs(ecgs).mean()) < 2.0  # mV: neither flat nor exploded


def test_sample_cli_without_workdir_uses_the_shipped_model(tmp_path):
  out = subprocess.run([sys.executable, 'sample.py', '--text', 'Normal ECG', '--hr', '70',
                        '--age', '50', '--sex', 'M', '--num', '1', '--sampler', 'ddim', '--steps', '5',
                        f'--out={tmp_path}'], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  with np.load(tmp_path / 'ecgs.npz') as f:
    assert f['ecg'].shape == (1, 1024, 12)
    assert json.loads(str(f['conditions']))['model'] == 'pretrained'


def test_warm_start_copies_shared_tensors_and_keeps_new_ones():
  initial = {'a': {'kernel': np.zeros((2, 3), np.float32)},
             'new': {'kernel': np.full((3,), 7.0, np.float32)}}
  source = {'a': {'kernel': np.arange(6.0, dtype=np.float32).reshape(2, 3)}}
  out = train_state.warm_start(initial, source, 'the source')
  np.testing.assert_array_equal(out['a']['kernel'], source['a']['kernel'])
  np.testing.assert_array_equal(out['new']['kernel'], initial['new']['kernel'])
  with pytest.raises(ValueError, match=r'a/kernel has shape \(3, 2\)'):
    train_state.warm_start(initial, {'a': {'kernel': np.zeros((3, 2))}}, 'the source')
  with pytest.raises(ValueError, match='parameters this config does not build'):
    train_state.warm_start(initial, {**source, 'gone': {'bias': np.zeros(1)}}, 'the source')


def test_fine_tuning_from_a_shipped_model_with_a_new_option(guided_workdir, tmp_path,
                                                             monkeypatch):
  """train.init_from='pretrained', here with a package exported from a micro run: the U-Net
  starts from its EMA weights (the clock's new tensors at zero, so the output is unchanged), its
  VAE encodes the latents, training runs, and the result exports with that VAE."""
  import jax
  import jax.numpy as jnp
  package = exported.export(open_model(guided_workdir, use_ema=True), tmp_path / 'package')
  monkeypatch.setattr(exported, 'PRETRAINED_FOLDER', package)
  shipped = open_model('pretrained')
  base, shipped_vae, shipped_unet = shipped.config, shipped.vae_params, shipped.unet_params
  config = workdirs.load_config(guided_workdir)
  config.unet.heart_rate_clock = 2
  config.train.init_from = 'pretrained'
  unet, state = diffusion_stage.initial_unet_state(config, 10)
  assert factory.count_params(state.params) > factory.count_params(shipped_unet)
  z = jax.random.normal(jax.random.PRNGKey(0), (2,) + factory.latent_shape(config))
  t = jnp.array([5, 700])
  c = jax.random.normal(jax.random.PRNGKey(1), (2, factory.condition_dim(config)))
  c = c.at[:, -1].set(jnp.array([50.0, 130.0]))
  np.testing.assert_allclose(unet.apply({'params': state.params}, z, t, c),
                             factory.make_unet(base).apply({'params': shipped_unet}, z, t, c),
                             atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(state.params),
                  jax.tree_util.tree_leaves(state.ema_params)):
    np.testing.assert_array_equal(a, b)

  workdir = tmp_path / 'fine_tuned'
  stages.train_stages(config, workdir, 'latents')
  encoded = workdirs.load_latents(workdir, 'train')['latent']
  np.testing.assert_allclose(encoded, workdirs.load_latents(guided_workdir, 'train')['latent'],
                             atol=1e-5)  # the package holds the same VAE as the micro run
  diffusion_stage.train_diffusion(config, workdir, max_steps=2)
  fine_tuned = open_model(exported.export(open_model(workdir, use_ema=True),
                                          tmp_path / 'fine_tuned_package'))
  assert fine_tuned.config.unet.heart_rate_clock == 2
  for a, b in zip(jax.tree_util.tree_leaves(fine_tuned.vae_params),
                  jax.tree_util.tree_leaves(shipped_vae)):
    np.testing.assert_array_equal(a, b)


def test_fine_tuning_from_an_exported_folder(guided_workdir, tmp_path):
  """train.init_from=FOLDER (an export of any trained workdir): the U-Net starts from that
  model's EMA weights and its VAE encodes the latents, without touching the shipped model."""
  import jax
  from diffusets_jax import config_validation
  folder = exported.export(open_model(guided_workdir, use_ema=True), tmp_path / 'exported')
  model = open_model(folder)
  exported_vae, exported_unet = model.vae_params, model.unet_params
  config = workdirs.load_config(guided_workdir)
  config.unlock()
  config.train.init_from = str(folder)
  config_validation.validate(config)
  _, state = diffusion_stage.initial_unet_state(config, 10)
  for name, tree in (('params', state.params), ('ema_params', state.ema_params)):
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(exported_unet)):
      np.testing.assert_array_equal(a, b, err_msg=name)
  workdir = tmp_path / 'fine_tuned'
  stages.train_stages(config, workdir, 'latents')
  assert not (workdir / 'vae').exists()
  np.testing.assert_allclose(workdirs.load_latents(workdir, 'train')['latent'],
                             workdirs.load_latents(guided_workdir, 'train')['latent'], atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(loading.workdir_vae_params(config, workdir)),
                  jax.tree_util.tree_leaves(exported_vae)):
    np.testing.assert_array_equal(a, b)

  config.train.init_from = str(tmp_path)  # a folder without weights
  with pytest.raises(ValueError, match='holds no weights.safetensors'):
    config_validation.validate(config)


def test_a_source_deriving_its_limb_leads_serves_a_12_lead_config(guided_workdir, tmp_path):
  """train.init_from naming a model whose decoder was folded (python -m diffusets_jax.pretrained
  --derive_limb_leads) while the config writes 12 leads, as workdirs fine-tuned from the shipped
  model before its fold: the VAE is laid out as 12 channels and decodes what the source does."""
  import jax
  from diffusets_jax.pretrained.__main__ import with_derived_limb_leads
  from diffusets_jax.evaluation import metrics
  from diffusets_jax.generate import VAECodec
  twelve = open_model(guided_workdir, use_ema=True)
  folded = with_derived_limb_leads(twelve)
  folder = exported.export(folded, tmp_path / 'folded')
  config = workdirs.load_config(guided_workdir)
  config.unlock()
  config.train.init_from = str(folder)
  assert not config.vae.derived_limb_leads
  params = loading.init_source_vae_params(config)
  assert params['decoder']['conv_out_25']['bias'].shape == (12,)
  z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3,) + factory.latent_shape(config)))
  ours = VAECodec(config, params).decode(z)
  theirs = VAECodec(folded.config, folded.vae_params).decode(z)
  np.testing.assert_allclose(ours, theirs, atol=1e-5)
  assert max(float(r['relative'].max()) for r in metrics.lead_residuals(ours).values()) < 1e-5
  with pytest.raises(ValueError, match='already derives'):
    with_derived_limb_leads(folded)


def test_a_fine_tuning_exports_the_vae_of_the_model_it_started_from(guided_workdir, tmp_path):
  """A workdir fine-tuned from a folded model (no VAE stage, a 12-lead VAE config) exports that
  model's VAE as stored: folded weights and its config.vae, beside the workdir's own U-Net."""
  import jax
  from diffusets_jax.pretrained.__main__ import main, with_derived_limb_leads
  source = with_derived_limb_leads(open_model(guided_workdir, use_ema=True))
  source_folder = exported.export(source, tmp_path / 'folded')
  config = workdirs.load_config(guided_workdir)
  config.unlock()
  config.train.init_from = str(source_folder)
  config.vae.epochs = 7   # a VAE record that is not the source's
  workdir = tmp_path / 'fine_tuned'
  stages.train_stages(config, workdir, 'latents')
  diffusion_stage.train_diffusion(config, workdir, max_steps=2)
  main(['--export_from', str(workdir), '--out', str(tmp_path / 'package')])
  package, tuned = open_model(tmp_path / 'package'), open_model(workdir, use_ema=True)
  assert package.config.vae.to_dict() == source.config.vae.to_dict()
  assert package.config.vae.derived_limb_leads and not tuned.config.vae.derived_limb_leads
  for ours, theirs in ((package.vae_params, source.vae_params),
                       (package.unet_params, tuned.unet_params)):
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
      np.testing.assert_array_equal(a, b)


def test_the_shipped_vae_must_be_the_one_the_config_builds(monkeypatch):
  import jax
  shipped = open_model('pretrained')
  config, vae = shipped.config, shipped.vae_params
  config.train.init_from = 'pretrained'  # the shipped config names the folder its run began from
  loaded = loading.init_source_vae_params(config)
  assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(vae)
  for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(vae)):
    np.testing.assert_array_equal(a, b)
  incomplete = {name: part for name, part in vae.items() if name != 'decoder'}
  monkeypatch.setattr(loading, 'init_source',
                      lambda config: dataclasses.replace(shipped, vae_params=incomplete))
  with pytest.raises(ValueError, match='the VAE of the shipped model lacks decoder/'):
    loading.init_source_vae_params(config)


def test_the_shipped_vae_has_no_stage_to_train(tmp_path):
  # The shipped config records its decoder's adversarial fine-tuning (vae.train_encoder False:
  # a vae stage would fine-tune that decoder again); a config that trains the whole VAE cannot
  # start from a trained one.
  config = open_model('pretrained').config
  assert not config.vae.train_encoder
  config.train.init_from = 'pretrained'
  config.vae.train_encoder = True
  with pytest.raises(ValueError, match='no vae stage'):
    stages.train_stages(config, tmp_path / 'run', 'vae')
  assert not (tmp_path / 'run').exists()


def test_shipped_sampler_matches_the_recipe():
  # The model card's figures are for these settings; a re-export from configs/pretrained.py
  # must ship the same ones.
  from configs import pretrained_finetune
  shipped = open_model('pretrained').config.sampling
  recipe = pretrained_finetune.get_config().sampling
  for key in ('sampler', 'ddim_steps', 'ddim_eta', 'guidance_scale', 'guidance_min_step', 'clip'):
    assert shipped[key] == recipe[key], key
  gen = Generator.pretrained()
  settings = gen.settings()
  assert (settings.sampler, settings.steps, settings.ddim_eta, settings.guidance_scale) == (
      'ddim', 50, 3.0, 2.5)


def recorded_samples(gen):
  guided = gen.generate(['Sinus bradycardia'], age=60, sex='F', heart_rate=50, num=2,
                        sampler='ddim', steps=10, seed=0, ddim_eta=3.0, guidance_scale=3.0)
  plain = gen.generate('Atrial fibrillation', age=72, sex='M', heart_rate=110, num=2,
                       sampler='ddim', steps=10, seed=1, ddim_eta=0.0, guidance_scale=1.0)
  return dict(eta3_guided=guided, deterministic_unguided=plain)


def test_samples_are_the_recorded_ones_to_float32_rounding():
  # A refactor that changes what is computed (weights, keys, ops) changes these samples by
  # hundredths of a mV and more. Not byte for byte: XLA compiles for the processor it runs on,
  # and on another CPU (AVX-512 against AVX2) the same program rounds differently, by up to
  # 1.1e-5 mV here after 10 steps at eta 3; 1e-4 leaves ten times that. Recorded with the
  # shipped weights by `python -m tests.test_pretrained` (the test suite's XLA options or not:
  # the same to 1e-4).
  from diffusets_jax.evaluation import metrics
  gen = Generator.pretrained()
  assert gen.config.vae.derived_limb_leads and not gen.config.vae.train_encoder
  samples = recorded_samples(gen)
  with np.load(GOLDEN) as recorded:
    assert recorded['sha256'] == MANIFEST['sha256'], 'recorded with other weights'
    for key, value in samples.items():
      np.testing.assert_allclose(value, recorded[key], rtol=0, atol=1e-4)
      for relation, result in metrics.lead_residuals(value).items():
        assert float(np.max(result['relative'])) < 1e-6, relation


if __name__ == '__main__':
  np.savez(GOLDEN, sha256=MANIFEST['sha256'], **recorded_samples(Generator.pretrained()))
  print(f'wrote {GOLDEN}')
