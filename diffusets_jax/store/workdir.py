"""A training workdir: where each file of a run lives, and reading and writing them.

  config.json                           the config the run was trained with
  <stage>/checkpoints/<step>/           orbax checkpoints of the train state (vae, diffusion, clip)
  <stage>/metrics.jsonl                 one JSON line per logged step
  <stage>/heldout.jsonl                 the held-out loss during training (diffusion)
  <stage>/conditioning.json             the text encoder and missing-value fills (diffusion, clip)
  diffusion/reference_time_tables.npz   a converted reference U-Net's own frozen time tables
  latents/<split>.npz                   the VAE's latents of a split, with their conditions
"""
import json
from pathlib import Path

import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from diffusets_jax import config_schema, train_state
from diffusets_jax.store.files import write_atomic

STAGES = ('vae', 'diffusion', 'clip')
TIME_TABLES_FILE = 'reference_time_tables.npz'


def config_path(workdir) -> Path:
  return Path(workdir) / 'config.json'


def checkpoint_dir(workdir, stage: str) -> Path:
  return Path(workdir).absolute() / stage / 'checkpoints'


def metrics_path(workdir, stage: str, name: str = 'metrics') -> Path:
  """<stage>/metrics.jsonl, or <stage>/heldout.jsonl for name='heldout'."""
  return Path(workdir) / stage / f'{name}.jsonl'


def conditioning_path(workdir, stage: str = 'diffusion') -> Path:
  """The conditioning record of the trained U-Net or CLIP model (written when training starts)."""
  return Path(workdir) / stage / 'conditioning.json'


def time_tables_path(workdir) -> Path:
  return Path(workdir) / 'diffusion' / TIME_TABLES_FILE


def latents_path(workdir, split: str) -> Path:
  return Path(workdir) / 'latents' / f'{split}.npz'


def has_stage(workdir, stage: str) -> bool:
  return checkpoint_dir(workdir, stage).exists()


def save_config(workdir, config: ml_collections.ConfigDict) -> Path:
  path = config_path(workdir)
  write_atomic(path, config.to_json(indent=1))
  return path


def load_config(workdir) -> ml_collections.ConfigDict:
  """The workdir's (or an exported folder's) config; fields it predates take their default."""
  path = config_path(workdir)
  if not path.exists():
    raise FileNotFoundError(f'{path} not found: {workdir} is not a trained diffusets-jax workdir')
  return config_schema.with_defaults(json.loads(path.read_text()))


def write_conditioning(workdir, stage: str, record: dict) -> Path:
  path = conditioning_path(workdir, stage)
  write_atomic(path, json.dumps(record, indent=1))
  return path


def read_conditioning(workdir, stage: str = 'diffusion') -> dict:
  path = conditioning_path(workdir, stage)
  if not path.exists():
    what = 'no trained diffusion stage (run train.py --stage diffusion)' if stage == 'diffusion' \
        else f'a {stage} stage that did not finish writing; run train.py --stage {stage} again'
    raise FileNotFoundError(f'{path} not found: {workdir} has {what}')
  return json.loads(path.read_text())


def manager(workdir, stage: str, save_every: int = 1, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_every,
                                         create=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir, stage), options=options)


def restore_latest(mngr: ocp.CheckpointManager, target):
  """(state, step) from the latest checkpoint, or (target, 0) if there is none."""
  step = mngr.latest_step()
  if step is None:
    return target, 0
  return mngr.restore(step, args=ocp.args.StandardRestore(target)), step


def latest_step(workdir, stage: str) -> int:
  """The step of the latest `stage` checkpoint; a clear error when there is none."""
  directory = checkpoint_dir(workdir, stage)
  step = manager(workdir, stage).latest_step() if directory.exists() else None
  if step is None:
    raise FileNotFoundError(
        f'no {stage} checkpoint in {directory}; train it first: '
        f'python train.py --config configs/tiny.py --workdir {workdir} --stage {stage}')
  return step


def restore_state(workdir, stage: str, config):
  """The latest whole `stage` train state (optimiser included), for training and tests."""
  latest_step(workdir, stage)
  state, _ = restore_latest(manager(workdir, stage), train_state.abstract_state(config, stage))
  return state


# What inference needs of each stage's train state; the optimiser's moments stay on disk.
INFERENCE_FIELDS = dict(vae=('params',), diffusion=('params', 'ema_params', 'step'),
                        clip=('params', 'batch_stats'))


def restore_for_inference(workdir, stage: str, config) -> dict:
  """{field: value} of the latest `stage` checkpoint for the fields INFERENCE_FIELDS names
  (those the state has): parameters only, as host arrays, no optimiser state read."""
  step = latest_step(workdir, stage)
  abstract = train_state.abstract_state(config, stage)
  target = {name: getattr(abstract, name) for name in INFERENCE_FIELDS[stage]
            if getattr(abstract, name, None) is not None}
  item = checkpoint_dir(workdir, stage) / str(step) / 'default'
  restore_args = ocp.checkpoint_utils.construct_restore_args(target)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    return checkpointer.restore(item, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))
  finally:
    checkpointer.close()


def read_jsonl(path) -> list[dict]:
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def training_logs(workdir) -> dict:
  """{stage: {'metrics': rows, 'heldout': rows or None}} of every stage that logged a step."""
  logs = {}
  for stage in STAGES:
    if metrics_path(workdir, stage).exists():
      heldout = metrics_path(workdir, stage, 'heldout')
      logs[stage] = dict(metrics=read_jsonl(metrics_path(workdir, stage)),
                         heldout=read_jsonl(heldout) if heldout.exists() else None)
  return logs


def write_latents(workdir, split: str, **arrays) -> Path:
  """latents/<split>.npz, written whole (a temporary file, then a rename)."""
  path = latents_path(workdir, split)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.tmp.npz')
  np.savez(tmp, **arrays)
  tmp.replace(path)
  return path


def load_latents(workdir, split: str) -> dict:
  path = latents_path(workdir, split)
  if not path.exists():
    raise FileNotFoundError(f'{path} not found; encode the latents first with python train.py ... '
                            f'--stage latents (the vae and all stages also write them)')
  with np.load(path) as f:
    return {k: f[k] for k in f.files}
