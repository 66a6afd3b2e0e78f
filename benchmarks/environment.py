"""What every benchmark report records about the machine and the software it ran on."""
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import jax
import flax

from diffusets_jax import config_schema

SIZES = ('paper', 'micro')


def describe() -> dict:
  device = jax.devices()[0]
  return dict(device=str(device), device_kind=device.device_kind, platform=platform.platform(),
              processor=platform.processor(), cpu_count=os.cpu_count(),
              python=platform.python_version(), jax=jax.__version__, flax=flax.__version__)


def write_report(report: dict, out) -> None:
  """Writes a benchmark's JSON report and says where."""
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1))
  print(f'wrote {out}')


def first_and_median_seconds(call, sync, repeats: int) -> tuple[float, float]:
  """(seconds of the first call, which compiles where nothing was compiled ahead; median
  seconds of `repeats` further calls). `sync(result)` waits for the device to finish."""
  start = time.perf_counter()
  sync(call())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    sync(call())
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


def benchmark_config(size: str = 'paper'):
  """The models a benchmark times, with random weights: 'paper' is the reference size (text
  width 1536, as ada-002, embedded offline: the conditions are random anyway); 'micro' is a
  narrow, shallow model of the same structure, for checking on a CPU in seconds that a
  benchmark runs (its figures say nothing of the paper size); its schedule has 100 steps, so
  that the reference's every-step DDPM loop is checked whole in seconds, not minutes."""
  if size not in SIZES:
    raise ValueError(f'size must be one of {SIZES}, got {size!r}')
  config = config_schema.reference_config()
  config.text.encoder, config.text.dim = 'hashing', 1536
  config.text.model = 'bag-of-words-blake2b-1536'
  if size == 'micro':
    config.vae.channels, config.vae.groups = (8, 8, 8), 4
    config.unet.num_levels = 3
    config.text.dim, config.text.model = 32, 'bag-of-words-blake2b-32'
    config.clip.widths, config.clip.text_hidden = (8, 8, 16, 16), 32
    config.diffusion.num_timesteps = 100
  return config
