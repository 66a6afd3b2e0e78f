"""Every config in configs/ loads, validates and resolves its default sampler."""
import importlib
from pathlib import Path

import pytest

from diffusets_jax import config_validation
from diffusets_jax.diffusion import sampling_settings


CONFIGS = sorted(path.stem for path in (Path(__file__).parents[1] / 'configs').glob('*.py')
                 if path.stem not in ('__init__', 'default'))


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_validates_and_its_sampler_resolves(name):
  # A config's sampling settings are what sample.py and evaluate.py run by default.
  config = config_validation.validate(importlib.import_module(f'configs.{name}').get_config())
  settings = sampling_settings.resolve(config)
  assert settings.unet_steps(config.diffusion.num_timesteps) <= config.diffusion.num_timesteps
