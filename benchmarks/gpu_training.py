"""A U-Net trained on a GPU inside the device machine's time limit, from latents encoded here.

The GPU machine lacks the data pipeline (tensorflow-datasets, array_record, wfdb), and the real
records do not travel with the repository; the diffusion stage needs neither. So the latents are
encoded here, travel as a carried folder of a few MB, and the U-Net trains there:

  # 1. here: the latents of the training and val records, with the VAE the config names
  python train.py --config configs/gpu_paper_unet.py --workdir runs/gpu_latents --stage latents \\
      --config.data.manual_dir=/path/to/ptb-xl/1.0.3+
  # 2. on the GPU machine (carry runs/gpu_latents/latents and build/gpu-wheels; returns <= 8 files)
  python benchmarks/gpu_training.py --config configs/gpu_paper_unet.py \\
      --latents runs/gpu_latents/latents --minutes 6 --out $OUT
  # 3. here, with the files it returned: a model folder evaluate.py and sample.py read
  python benchmarks/gpu_training.py --assemble RETURNED_FOLDER --out runs/gpu_paper_model

Step 2 compiles the training step once and times it, sets the number of steps (whole epochs)
that fit in --minutes at that rate, so that the learning rate completes its cosine schedule,
then runs the diffusion stage. It writes the U-Net's sampling (EMA) weights as safetensors
shards small enough to come back, run.json (device, versions, command, compile time, steps per
second, loss and held-out loss curves, the config and the text-conditioning record) and the
training curves. Step 3 joins those weights to the VAE the config's train.init_from names.
"""
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WHEELS = ROOT / 'build' / 'gpu-wheels'
SHARD_BYTES = 15 * 2 ** 20   # the device machine returns files of at most 16 MiB
RUN = 'run.json'


def wheels_on_path() -> list[str]:
  """Puts the carried wheels (make gpu-wheels) on the path when ml_collections is missing."""
  if all(importlib.util.find_spec(name) for name in ('absl', 'ml_collections', 'tqdm')):
    return []
  from gpu_check import unpack_wheels  # beside this script, so on the path
  target = Path(tempfile.mkdtemp(prefix='gpu_wheels_'))
  names = unpack_wheels(WHEELS, target)
  sys.path.insert(0, str(target))
  return names


def shard_tensors(tensors: dict, limit: int = SHARD_BYTES) -> list[dict]:
  """Tensors in name order, grouped into shards of at most `limit` bytes (one tensor over it
  makes a shard of its own)."""
  shards, current, size = [], {}, 0
  for name in sorted(tensors):
    nbytes = tensors[name].nbytes
    if current and size + nbytes > limit:
      shards.append(current)
      current, size = {}, 0
    current[name] = tensors[name]
    size += nbytes
  if current:
    shards.append(current)
  return shards


def shard_names(count: int) -> list[str]:
  return [f'unet-{i:05d}-of-{count:05d}.safetensors' for i in range(1, count + 1)]


def time_training_step(config, data, repeats: int) -> tuple[float, float]:
  """(compile seconds, steps per second) of the stage's training step at the config's batch, on
  a throwaway state: the first call, then the median of `repeats` more."""
  import jax
  import numpy as np
  import environment
  from diffusets_jax import batching, train_state
  from diffusets_jax.diffusion.schedule import schedule_from_config
  from diffusets_jax.training import diffusion_stage, steps
  batch_size = config.diffusion.batch_size
  unet, state = train_state.unet_state(config, 1000)
  p_step = diffusion_stage.training_step(config, unet, schedule_from_config(config))
  index = np.arange(batch_size) % len(data['latent'])
  batch = batching.shard(diffusion_stage.latent_batch(data, index, np.arange(batch_size)))
  replicated, key = [steps.replicate(state)], jax.random.PRNGKey(0)

  def step():
    replicated[0], metrics = p_step(replicated[0], batch, key)  # donated: re-bound after it
    return metrics

  compile_s, seconds = environment.first_and_median_seconds(step, jax.block_until_ready, repeats)
  return compile_s, 1.0 / seconds


def plan_steps(config, data, minutes: float, max_steps: int | None) -> dict:
  """Times the training step, then fits whole epochs into `minutes` (at most max_steps)."""
  from diffusets_jax import batching
  compile_s, rate = time_training_step(config, data, repeats=20)
  per_epoch = batching.steps_per_epoch(len(data['latent']), config.diffusion.batch_size)
  fit = int(rate * minutes * 60)
  if max_steps:
    fit = min(fit, max_steps)
  epochs = max(1, fit // per_epoch)
  return dict(compile_s=round(compile_s, 2), measured_steps_per_s=round(rate, 3),
              budget_minutes=minutes, epochs=epochs, steps_per_epoch=per_epoch,
              steps=epochs * per_epoch)


def train(config, latents: Path, minutes: float, max_steps: int | None, out: Path,
          workdir: Path, command: str, wheels=()) -> dict:
  import jax
  import numpy as np
  import environment
  from safetensors.numpy import save_file
  from diffusets_jax import config_validation
  from diffusets_jax.io import plots
  from diffusets_jax.store import exported, loading
  from diffusets_jax.store import workdir as workdirs
  from diffusets_jax.training import diffusion_stage

  config = config_validation.validate(config)
  if not (latents / 'train.npz').is_file():
    raise FileNotFoundError(f'{latents}/train.npz not found: encode the latents first (train.py '
                            f'--stage latents, see this script\'s --help)')
  started = workdirs.config_path(workdir).is_file()
  if started:  # the same run, killed: resume it with its own plan
    print(f'[gpu_training] resuming the run in {workdir} (its config and plan; '
          f'--config, --minutes and --max_steps are not read)', flush=True)
    config = workdirs.load_config(workdir)
    plan = json.loads((workdir / 'plan.json').read_text())
  else:
    shutil.copytree(latents, workdirs.latents_path(workdir, 'train').parent)
  data = workdirs.load_latents(workdir, 'train')
  if not started:
    plan = plan_steps(config, data, minutes, max_steps)
    total = plan['steps']
    with config.unlocked():
      config.diffusion.epochs = plan['epochs']
      # About ten held-out points and a checkpoint at each quarter (a killed run resumes).
      config.train.heldout_every_steps = max(1, total // 10)
      config.train.checkpoint_every_steps = max(1, total // 4)
    (workdir / 'plan.json').write_text(json.dumps(plan))
    workdirs.save_config(workdir, config)  # last: a workdir with a config has a plan
  print(f'[gpu_training] compile {plan["compile_s"]:.1f} s, {plan["measured_steps_per_s"]:.2f} '
        f'steps/s: {plan["epochs"]} epochs of {plan["steps_per_epoch"]} steps '
        f'({plan["steps"]} steps) in about '
        f'{plan["steps"] / plan["measured_steps_per_s"] / 60:.1f} min', flush=True)
  out.mkdir(parents=True, exist_ok=True)
  record = dict(command=command, **environment.describe(), backend=jax.default_backend(),
                devices=jax.device_count(), numpy=np.__version__, wheels=list(wheels), **plan,
                batch_size=config.diffusion.batch_size, training_latents=len(data['latent']))
  (out / RUN).write_text(json.dumps(record, indent=1))  # the plan, should the run be cut off
  start = time.time()
  diffusion_stage.train_diffusion(config, workdir)
  train_s = time.time() - start

  model = loading.open_model(workdir)
  tensors = exported.flat_tensors('unet', model.unet_params)
  shards = shard_tensors(tensors)
  for name, shard in zip(shard_names(len(shards)), shards):
    save_file(shard, str(out / name))
  logs = workdirs.training_logs(workdir)
  plots.plot_training_curves(logs, out / 'training_curves.png')
  log = logs.get('diffusion', dict(metrics=[], heldout=None))
  metrics = log['metrics']
  run = dict(
      record, train_wall_s=round(train_s, 1), resumed=started,
      unet_parameters=int(sum(v.size for v in tensors.values())),
      unet_weights=model.unet_weights, unet_step=model.unet_step, shards=len(shards),
      heldout=log['heldout'] or [],
      loss=[dict(step=r['step'], loss=r['loss'], steps_per_s=r['steps_per_s'])
            for r in metrics[::max(1, len(metrics) // 200)]],
      config=json.loads(config.to_json()), conditioning=model.conditioning)
  (out / RUN).write_text(json.dumps(run, indent=1))
  return run


def assemble(returned: Path, out: Path) -> Path:
  """The model folder of a GPU run's returned files: its U-Net, the VAE its config's
  train.init_from names."""
  from flax import traverse_util
  from safetensors.numpy import load_file
  from diffusets_jax import config_schema
  from diffusets_jax.store import exported, loading
  from diffusets_jax.store.files import staged_folder
  from diffusets_jax.store.trained_model import TrainedModel

  run_path = returned / RUN
  if not run_path.is_file():
    raise FileNotFoundError(f'{run_path} not found: {returned} is not what a GPU training run '
                            f'returned')
  run = json.loads(run_path.read_text())
  names = shard_names(run['shards'])
  missing = [name for name in names if not (returned / name).is_file()]
  if missing:
    raise FileNotFoundError(f'{returned} lacks {", ".join(missing)} of the run\'s '
                            f'{run["shards"]} weight shards')
  tensors = {}
  for name in names:
    tensors.update(load_file(str(returned / name)))
  unet = traverse_util.unflatten_dict({k[len('unet/'):]: v for k, v in tensors.items()}, sep='/')
  config = config_schema.with_defaults(run['config'])
  if not config.train.init_from:
    raise ValueError('the run\'s config has no train.init_from: it names no VAE to join the '
                     'U-Net to')
  vae = loading.init_source_vae_params(config)  # laid out as the config builds it
  model = TrainedModel(config, vae, unet, run['conditioning'],
                       source=f'GPU run on {run["device_kind"]}',
                       unet_weights=run['unet_weights'], unet_step=run['unet_step'])
  with staged_folder(out) as staging:
    exported.export(model, staging, max_bytes=None)
    shutil.copy(run_path, staging / RUN)
  return out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO
  if FLAGS.assemble:
    print(f'model folder: {assemble(Path(FLAGS.assemble), Path(FLAGS.out))}')
    return
  if not (_CONFIG.value and FLAGS.latents):
    raise app.UsageError('training needs --config and --latents (or --assemble RETURNED)')
  command = ' '.join(['python', 'benchmarks/gpu_training.py', *sys.argv[1:]])
  run = train(_CONFIG.value, Path(FLAGS.latents), FLAGS.minutes, FLAGS.max_steps,
              Path(FLAGS.out), Path(FLAGS.workdir), command, WHEELS_USED)
  held = run['heldout'][-1]['heldout_loss'] if run['heldout'] else None
  print(f'[gpu_training] {run["steps"]} steps in {run["train_wall_s"]:.0f} s on '
        f'{run["device_kind"]}; held-out loss {held}; wrote {run["shards"]} weight shards, '
        f'{RUN} and training_curves.png to {FLAGS.out}')


if __name__ == '__main__':
  WHEELS_USED = wheels_on_path()  # before absl and ml_collections, which may come from them
  from absl import app, flags, logging
  from ml_collections import config_flags
  _CONFIG = config_flags.DEFINE_config_file(
      'config', None, 'Config file (training), e.g. configs/gpu_paper_unet.py; override fields '
      'as --config.diffusion.batch_size=128.', lock_config=True)
  flags.DEFINE_string('latents', None, 'Folder holding train.npz and val.npz (training).')
  flags.DEFINE_float('minutes', 6.0, 'Training time to fit whole epochs into, compile excluded.')
  flags.DEFINE_integer('max_steps', None, 'At most this many steps (a smoke run).')
  flags.DEFINE_string('workdir', 'runs/gpu_training', 'Where it trains; a rerun with the same '
                      'one resumes (on a machine kept warm between calls).')
  flags.DEFINE_string('assemble', None, 'Here: make a model folder from the files a GPU run '
                      'returned, in this folder.')
  flags.DEFINE_string('out', os.environ.get('OUT', 'benchmarks/results/gpu_training'),
                      "Output folder (default $OUT, the GPU machine's return folder).")
  FLAGS = flags.FLAGS
  app.run(main)
