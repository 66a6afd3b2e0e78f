"""The pretrained model shipped in the package: its files, checksum, shapes, and that it
generates finite ECGs of the right shape from the Python API and from sample.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from diffusets_jax import pretrained
from diffusets_jax.generate import Generator
from diffusets_jax.models import factory

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((pretrained.HERE / 'manifest.json').read_text())


def test_files_match_the_manifest():
  weights = pretrained.HERE / pretrained.WEIGHTS
  assert weights.stat().st_size == MANIFEST['bytes'] <= pretrained.MAX_BYTES
  assert pretrained.sha256(weights) == MANIFEST['sha256']
  tensors = load_file(str(weights))
  assert {name: list(t.shape) for name, t in tensors.items()} == MANIFEST['shapes']
  assert all(t.dtype == np.float32 and np.all(np.isfinite(t)) for t in tensors.values())


def test_weights_fit_the_recorded_config():
  config, vae_params, unet_params, conditioning = pretrained.load()
  import jax
  vae_shapes = jax.eval_shape(lambda: factory.init_vae(config, jax.random.PRNGKey(0)))
  unet_shapes = jax.eval_shape(lambda: factory.init_unet(config, jax.random.PRNGKey(0)))
  same = lambda a, b: jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
      x.shape == y.shape for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
  assert same(vae_params, vae_shapes) and same(unet_params, unet_shapes)
  assert factory.count_params(unet_params) == MANIFEST['parameters']['unet']
  assert conditioning['text']['encoder'] == config.text.encoder


def test_a_damaged_file_is_refused(tmp_path):
  for name in ('config.json', 'conditioning.json', 'manifest.json'):
    (tmp_path / name).write_text((pretrained.HERE / name).read_text())
  data = bytearray((pretrained.HERE / pretrained.WEIGHTS).read_bytes())
  data[-1] ^= 1
  (tmp_path / pretrained.WEIGHTS).write_bytes(bytes(data))
  with pytest.raises(ValueError, match='does not match the SHA-256'):
    pretrained.load(tmp_path)


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
