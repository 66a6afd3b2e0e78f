"""What every benchmark report records about the machine and the software it ran on."""
import json
import os
import platform
from pathlib import Path

import jax
import flax


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
