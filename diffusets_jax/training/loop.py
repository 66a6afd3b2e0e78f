"""The training loop every stage shares: resume, step, log (progress bar and JSON lines),
evaluate, checkpoint."""
import json
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from tqdm import tqdm

from diffusets_jax import batching
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.store.files import write_atomic
from diffusets_jax.training import distributed, steps


def logged_step(line: str) -> int | None:
  """The step of one metrics.jsonl line; None for a line cut short by a kill."""
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):
    return None


class MetricsWriter:
  """Appends one JSON object per line; the file survives kills (flushed per line). A run resumed
  at `resume_step` first drops the lines logged after that checkpoint by the killed run, which
  the resumed run logs again, so each step appears once."""

  def __init__(self, path: Path, resume_step: int = 0):
    path.parent.mkdir(parents=True, exist_ok=True)
    self.path = path
    if path.exists():
      kept = [line for line in path.read_text().splitlines()
              if (step := logged_step(line)) is not None and step <= resume_step]
      write_atomic(path, ''.join(line + '\n' for line in kept))
    self._file = open(path, 'a')

  def write(self, record: dict):
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()

  def close(self):
    self._file.close()


def run_loop(stage, config, workdir, state, p_step, batch_fn, total_steps, lr_fn,
             step_args_fn=lambda step: {}, evaluate_fn=None):
  """Shared loop: resume, step, log (progress bar + JSONL), checkpoint. Returns the final state.

  `batch_fn(step)` gives this process's rows of the global batch (all of it in one process);
  `step_args_fn(step)` the named scalars broadcast to every device (e.g. the KL weight), which are
  logged too. `evaluate_fn(state)`, if given, is called every train.heldout_every_steps and at the
  last step, and process 0 writes its row to <stage>/heldout.jsonl.
  """
  mngr = workdirs.manager(workdir, stage, config.train.checkpoint_every_steps,
                          config.train.keep_checkpoints)
  state, start = workdirs.restore_latest(mngr, state)
  main = distributed.is_main_process()
  if start >= total_steps:
    log_main(f'[{stage}] already trained: checkpoint at step {start} of {total_steps}')
    return state
  if start:
    log_main(f'[{stage}] resuming from the checkpoint at step {start}')
  writer = MetricsWriter(workdirs.metrics_path(workdir, stage), start) if main else None
  every = config.train.heldout_every_steps
  # Every process evaluates, so none waits at the next checkpoint barrier; process 0 writes.
  evaluating = evaluate_fn is not None and every > 0
  heldout = MetricsWriter(workdirs.metrics_path(workdir, stage, 'heldout'), start) if (
      evaluating and main) else None
  base_key = jax.random.PRNGKey(config.seed + 1)
  replicated = steps.replicate(state)
  bar = tqdm(range(start, total_steps), initial=start, total=total_steps, desc=stage,
             unit='step', dynamic_ncols=True, disable=not main)
  t0 = time.time()
  postfix = {}
  for step in bar:
    batch = batching.shard(batch_fn(step))
    args = step_args_fn(step)
    replicated, metrics = p_step(replicated, batch, jax.random.fold_in(base_key, step),
                                 *args.values())
    last = step + 1 == total_steps
    if main and ((step + 1) % config.train.log_every_steps == 0 or last):
      metrics = {k: float(v.addressable_data(0)[0]) for k, v in metrics.items()}  # pmean'd
      rate = (step + 1 - start) / (time.time() - t0)
      postfix.update(loss=f'{metrics["loss"]:.4g}', steps_per_s=f'{rate:.2f}')
      bar.set_postfix(postfix)
      writer.write(dict(step=step + 1, time=time.time(), steps_per_s=rate,
                        learning_rate=float(lr_fn(step)), **args, **metrics))
    evaluate_now = evaluating and ((step + 1) % every == 0 or last)
    save_now = mngr.should_save(step + 1) or last
    host_state = steps.unreplicate(replicated) if evaluate_now or save_now else None
    if evaluate_now:
      row = evaluate_fn(host_state)
      if heldout:
        heldout.write(dict(step=step + 1, **row))
        postfix['heldout_loss'] = f'{row["heldout_loss"]:.4g}'
        bar.set_postfix(postfix)
    if save_now:
      mngr.save(step + 1, args=ocp.args.StandardSave(host_state), force=last)
  mngr.wait_until_finished()
  for log in (writer, heldout):
    if log:
      log.close()
  bar.close()
  return steps.unreplicate(replicated)


def log_main(message: str) -> None:
  """Prints on process 0 only (every process runs the same program)."""
  if distributed.is_main_process():
    print(message)


def describe_devices() -> str:
  if jax.process_count() == 1:
    return f'{jax.local_device_count()} device(s)'
  return f'{jax.device_count()} devices in {jax.process_count()} processes'
