"""Multi-process (multi-host) set-up: one process per host, `pmap` over its local devices,
collectives over all devices of all processes.

  # on each of N hosts (or N processes on one machine, e.g. for a test):
  python train.py ... --coordinator_address=HOST0:12355 --num_processes=N --process_id=I
  # on a TPU pod slice or under Slurm/Open MPI the three are detected:
  python train.py ... --distributed

Every process runs the same program; each reads only its own rows of each global batch
(`batching.process_rows`). The workdir must be on a filesystem every process sees: the
checkpoints and latents are written there once and read by all.
"""
import jax
from jax.experimental import multihost_utils


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """jax.distributed.initialize, before any JAX computation. On CPU, cross-process collectives
  need gloo (XLA's default CPU client has none)."""
  try:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, ValueError):  # versions where gloo is the only choice or absent
    pass
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_main_process() -> bool:
  """Process 0 writes logs, metrics and files the others only read."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier of this name (no-op in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
