"""What every benchmark report records about the machine and the software it ran on."""
import os
import platform

import jax
import flax


def describe() -> dict:
  device = jax.devices()[0]
  return dict(device=str(device), device_kind=device.device_kind, platform=platform.platform(),
              processor=platform.processor(), cpu_count=os.cpu_count(),
              python=platform.python_version(), jax=jax.__version__, flax=flax.__version__)
