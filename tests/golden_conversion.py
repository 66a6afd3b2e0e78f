"""Golden outputs of paper-size models converted from a seeded random reference state dict.

  python tests/golden_conversion.py --write   # regenerate tests/fixtures/conversion_golden.json

Only after a deliberate numerical change: the test compares against the stored values so that
later changes cannot alter the converted models' outputs silently.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

from configs import diffusets
from diffusets_jax.conversion import reference_checkpoints as ref
from diffusets_jax.models import factory
from diffusets_jax.models.unet import time_table

ROOT = Path(__file__).resolve().parents[1]
LAYOUT_PATH = ROOT / 'tests/fixtures/reference_checkpoint_layout.json'
GOLDEN_PATH = ROOT / 'tests/fixtures/conversion_golden.json'


def reference_state(layout: dict, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  table = time_table().astype(np.float32)
  return {name: table.copy() if name.endswith('time_emb.embeddings')
          else (rng.standard_normal(shape) * 0.05).astype(np.float32)
          for name, shape in layout.items()}


def summary(x) -> dict:
  x = np.asarray(x, np.float64)
  return dict(shape=list(x.shape), head=np.round(x.reshape(-1)[:6], 6).tolist(),
              mean=round(float(x.mean()), 6), abs_mean=round(float(np.abs(x).mean()), 6))


def golden_outputs() -> dict:
  config = diffusets.get_config()
  layout = json.loads(LAYOUT_PATH.read_text())
  vae_state = {part: reference_state(layout['vae_model.pth'][part], seed)
               for seed, part in enumerate(('encoder', 'decoder'))}
  vae, unet = factory.make_vae(config), factory.make_unet(config)
  vae_params = ref.vae_from_reference(
      vae_state, jax.eval_shape(lambda: factory.init_vae(config, jax.random.PRNGKey(0))))
  unet_params = ref.unet_from_reference(
      reference_state(layout['unet_all.pth'], 2),
      jax.eval_shape(lambda: factory.init_unet(config, jax.random.PRNGKey(0))))
  rng = np.random.default_rng(3)
  ecg = jnp.asarray(rng.standard_normal((1, 1024, 12)).astype(np.float32))
  latent = jnp.asarray(rng.standard_normal((1,) + factory.latent_shape(config)).astype(np.float32))
  cond = jnp.asarray(rng.standard_normal((1, factory.condition_dim(config))).astype(np.float32))
  _, mean, logvar = vae.apply({'params': vae_params}, ecg, jnp.zeros_like(latent),
                              method=vae.encode)
  decoded = vae.apply({'params': vae_params}, latent, method=vae.decode)
  eps = unet.apply({'params': unet_params}, latent, jnp.array([500]), cond)
  return dict(encoder_mean=summary(mean), encoder_logvar=summary(logvar),
              decoder=summary(decoded), unet=summary(eps))


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--write', action='store_true')
  args = parser.parse_args()
  outputs = golden_outputs()
  print(json.dumps(outputs, indent=1))
  if args.write:
    GOLDEN_PATH.write_text(json.dumps(outputs, indent=1))
    print(f'wrote {GOLDEN_PATH}')
