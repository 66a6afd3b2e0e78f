"""Orbax checkpoints of a stage's train state, and the run config saved beside them.

Layout of a workdir:
  config.json                   the config the run was trained with
  <stage>/checkpoints/<step>/   orbax checkpoints (stage: vae, diffusion, clip)
  <stage>/metrics.jsonl         one JSON line per logged step
"""
import json
import os
import tempfile
from pathlib import Path

import ml_collections
import orbax.checkpoint as ocp

STAGES = ('vae', 'diffusion', 'clip')


def manager(workdir, stage: str, save_every: int = 1, keep: int = 3) -> ocp.CheckpointManager:
  directory = Path(workdir).absolute() / stage / 'checkpoints'
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every,
                                         create=True)
  return ocp.CheckpointManager(directory, options=options)


def restore_latest(mngr: ocp.CheckpointManager, target):
  """(state, step) from the latest checkpoint, or (target, 0) if there is none."""
  step = mngr.latest_step()
  if step is None:
    return target, 0
  return mngr.restore(step, args=ocp.args.StandardRestore(target)), step


def restore_params(workdir, stage: str, target_state):
  """Parameters of the latest `stage` checkpoint; a clear error when there is none."""
  return restore_state(workdir, stage, target_state).params


def restore_state(workdir, stage: str, target_state):
  """The latest `stage` train state; a clear error when there is none."""
  directory = Path(workdir) / stage / 'checkpoints'
  mngr = manager(workdir, stage) if directory.exists() else None
  if mngr is None or mngr.latest_step() is None:
    raise FileNotFoundError(
        f'no {stage} checkpoint in {directory}; train it first: '
        f'python train.py --config configs/tiny.py --workdir {workdir} --stage {stage}')
  state, _ = restore_latest(mngr, target_state)
  return state


def write_atomic(path, text: str) -> None:
  """Writes via a temporary file and a rename, so readers never see half a file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def save_config(workdir, config: ml_collections.ConfigDict) -> Path:
  path = Path(workdir) / 'config.json'
  write_atomic(path, config.to_json(indent=1))
  return path


def load_config(workdir) -> ml_collections.ConfigDict:
  """The workdir's config; fields it predates take their default (every newer option defaults
  to off, so an older workdir keeps its meaning)."""
  from configs import default  # the schema every config derives from
  path = Path(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(f'{path} not found: {workdir} is not a trained diffusets-jax workdir')
  return with_defaults(json.loads(path.read_text()), default.get_config())


def with_defaults(saved: dict, defaults: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  merged = defaults.to_dict()

  def update(target, values):
    for key, value in values.items():
      if isinstance(value, dict) and isinstance(target.get(key), dict) and key != 'template':
        update(target[key], value)
      else:
        target[key] = value

  update(merged, saved)
  return ml_collections.ConfigDict(merged)
