"""Runs 2 VAE, 2 diffusion and 2 CLIP train steps on random data with however many devices this process
has; prints the losses as JSON. Used by test_training.py with 1 and 4 virtual CPU devices."""
import json
import sys

import numpy as np
import jax

sys.path.insert(0, '.')
from tests.conftest import micro_config  # noqa: E402
from diffusets_jax import batching  # noqa: E402
from diffusets_jax.models import factory  # noqa: E402
from diffusets_jax import train_state  # noqa: E402
from diffusets_jax.diffusion import schedule  # noqa: E402
from diffusets_jax.training import steps  # noqa: E402


def main():
  config = micro_config('unused')
  rng = np.random.default_rng(0)
  batch = 8
  losses = {'devices': jax.local_device_count(), 'vae': [], 'diffusion': [], 'clip': []}
  vae, state = train_state.vae_state(config, 10)
  p_step, state = steps.make_vae_step(vae), steps.replicate(state)
  ecg = rng.standard_normal((2, batch, 1024, 12)).astype(np.float32)
  for step in range(2):
    data = batching.shard(dict(ecg=ecg[step], example_index=np.arange(batch)))
    state, metrics = p_step(state, data, jax.random.PRNGKey(step), 0.5)
    losses['vae'].append(float(metrics['loss'][0]))
  unet, state = train_state.unet_state(config, 10)
  p_step = steps.make_diffusion_step(unet, schedule.schedule_from_config(config))
  state = steps.replicate(state)
  latent = 0.2 * rng.standard_normal((2, batch) + factory.latent_shape(config)).astype(np.float32)
  cond = rng.standard_normal((2, batch, factory.condition_dim(config))).astype(np.float32)
  for step in range(2):
    data = batching.shard(dict(latent=latent[step], cond=cond[step],
                                     example_index=np.arange(batch)))
    state, metrics = p_step(state, data, jax.random.PRNGKey(step))
    losses['diffusion'].append(float(metrics['loss'][0]))
  clip, state = train_state.clip_state(config, 10)
  p_step, state = steps.make_clip_step(clip), steps.replicate(state)
  text = rng.standard_normal((2, batch, factory.condition_dim(config) - 3)).astype(np.float32)
  for step in range(2):
    data = batching.shard(dict(ecg=ecg[step], text=text[step]))
    state, metrics = p_step(state, data, jax.random.PRNGKey(step))
    losses['clip'].append(float(metrics['loss'][0]))
  print(json.dumps(losses))


if __name__ == '__main__':
  main()
