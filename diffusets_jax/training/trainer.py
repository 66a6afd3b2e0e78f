"""The training stages: `vae`, latent pre-encoding, `diffusion`, and `clip` (the ECG-text model
the evaluation measures generated ECGs with).

`train_and_evaluate(config, workdir, stage)` runs a stage to its last step, resuming from the
latest checkpoint in the workdir if there is one.
"""
import json
import logging
import time
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp
from flax import traverse_util
from tqdm import tqdm

from diffusets_jax.conditioning import openai_encoder, patient, prompts, text_encoders
from diffusets_jax.datasets import augmentation, input_pipeline, preprocessing
from diffusets_jax.diffusion.schedule import linear_schedule
from diffusets_jax.models import factory
from diffusets_jax.training import checkpoints, distributed, steps
from diffusets_jax.training import heldout as heldout_loss

log = logging.getLogger(__name__)
SPLITS = ('train', 'val', 'test')


def schedule_from_config(config):
  d = config.diffusion
  return linear_schedule(d.num_timesteps, d.beta_start, d.beta_end)


def vae_state(config, total_steps: int, rng=None):
  vae = factory.make_vae(config)
  params = factory.init_vae(config, rng if rng is not None else jax.random.PRNGKey(config.seed))
  lr = steps.onecycle_schedule(total_steps, config.vae.learning_rate, config.vae.peak_learning_rate)
  return vae, steps.create_state(vae.apply, params, lr, config.vae.weight_decay)


def unet_state(config, total_steps: int, rng=None):
  unet = factory.make_unet(config)
  params = factory.init_unet(config, rng if rng is not None else jax.random.PRNGKey(config.seed))
  d = config.diffusion
  lr = steps.cosine_schedule(total_steps, d.learning_rate, d.final_lr_fraction)
  return unet, steps.create_state(unet.apply, params, lr, d.weight_decay, ema=d.ema_decay > 0)


def load_init_source(config):
  """(config, VAE params, U-Net params, conditioning) of the model train.init_from names: the
  shipped one ('pretrained') or one exported to a folder (python -m diffusets_jax.pretrained
  --export_from WORKDIR --out FOLDER)."""
  from diffusets_jax import pretrained
  if config.train.init_from == 'pretrained':
    return pretrained.load()
  return pretrained.load(config.train.init_from)


def init_source_name(config) -> str:
  return ('the shipped model' if config.train.init_from == 'pretrained'
          else f'the model in {config.train.init_from}')


def initial_unet_state(config, total_steps: int):
  """unet_state, started from the (EMA) U-Net weights of the model train.init_from names:
  weights, EMA and a fresh optimiser. A checkpoint in the workdir still wins."""
  unet, state = unet_state(config, total_steps)
  if not config.train.init_from:
    return unet, state
  source = init_source_name(config)
  shipped = load_init_source(config)[2]
  start = warm_start(state.params, shipped, f'the U-Net of {source}')
  new = factory.count_params(start) - factory.count_params(shipped)
  log_main(f'[diffusion] starting from the U-Net of {source}'
           + (f'; {new:,} parameters it lacks start at their initial values' if new else ''))
  state = state.replace(params=start, opt_state=state.tx.init(start))
  if getattr(state, 'ema_params', None) is not None:
    state = state.replace(ema_params=start)
  return unet, state


def clip_state(config, total_steps: int, rng=None):
  """The CLIP model (BatchNorm synchronised over the pmap axis) and its train state."""
  clip = factory.make_clip(config, batch_axis=steps.AXIS)
  variables = factory.init_clip(config,
                                rng if rng is not None else jax.random.PRNGKey(config.seed + 3))
  c = config.clip
  lr = steps.cosine_schedule(total_steps, c.learning_rate, c.final_lr_fraction)
  return clip, steps.create_state(clip.apply, variables['params'], lr, c.weight_decay,
                                  variables['batch_stats'])


def warm_start(params, source, where: str):
  """`params` with every tensor that `source` also has replaced by the source's (shapes must
  agree); tensors only `params` has (a new option's) keep their initial values."""
  flat = traverse_util.flatten_dict(params, sep='/')
  given = traverse_util.flatten_dict(source, sep='/')
  extra = sorted(set(given) - set(flat))
  if extra:
    raise ValueError(f'{where} has parameters this config does not build ({", ".join(extra[:3])}'
                     f'{", ..." if len(extra) > 3 else ""}): its architecture differs')
  for name, value in given.items():
    if tuple(value.shape) != tuple(flat[name].shape):
      raise ValueError(f'{where}: {name} has shape {tuple(value.shape)}, this config builds '
                       f'{tuple(flat[name].shape)}')
    flat[name] = jnp.asarray(value, flat[name].dtype)
  return traverse_util.unflatten_dict(flat, sep='/')


def init_source_vae_params(config):
  """The VAE of the model train.init_from names, checked against the VAE `config` builds: every
  tensor present, at its shape. The reference is abstract (no initialiser runs), as for a
  checkpoint restore."""
  source = init_source_name(config)
  shipped = load_init_source(config)[1]
  expected = jax.eval_shape(lambda: factory.init_vae(config, jax.random.PRNGKey(0)))
  missing = sorted(set(traverse_util.flatten_dict(expected, sep='/'))
                   - set(traverse_util.flatten_dict(shipped, sep='/')))
  if missing:
    raise ValueError(f'the VAE of {source} lacks {", ".join(missing[:3])}'
                     f'{", ..." if len(missing) > 3 else ""}: this config builds another VAE')
  return warm_start(expected, shipped, f'the VAE of {source}')


def workdir_vae_params(config, workdir):
  """The VAE of a trained workdir: its own, or that of the model it was fine-tuned from
  (train.init_from, which trains no VAE)."""
  if config.train.init_from and not (Path(workdir) / 'vae').exists():
    return init_source_vae_params(config)
  return checkpoints.restore_params(workdir, 'vae', abstract_state(config, 'vae'))


def abstract_state(config, stage: str):
  """Shapes and dtypes of a stage's train state without running its initialiser: a restore
  target that costs no compile."""
  make = dict(vae=vae_state, diffusion=unet_state, clip=clip_state)[stage]
  return jax.eval_shape(lambda: make(config, 1)[1])


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
      checkpoints.write_atomic(path, ''.join(line + '\n' for line in kept))
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
  mngr = checkpoints.manager(workdir, stage, config.train.checkpoint_every_steps,
                             config.train.keep_checkpoints)
  state, start = checkpoints.restore_latest(mngr, state)
  main = distributed.is_main_process()
  if start >= total_steps:
    log_main(f'[{stage}] already trained: checkpoint at step {start} of {total_steps}')
    return state
  if start:
    log_main(f'[{stage}] resuming from the checkpoint at step {start}')
  writer = MetricsWriter(Path(workdir) / stage / 'metrics.jsonl', start) if main else None
  every = config.train.heldout_every_steps
  # Every process evaluates, so none waits at the next checkpoint barrier; process 0 writes.
  evaluating = evaluate_fn is not None and every > 0
  heldout = MetricsWriter(Path(workdir) / stage / 'heldout.jsonl', start) if (
      evaluating and main) else None
  base_key = jax.random.PRNGKey(config.seed + 1)
  replicated = steps.replicate(state)
  bar = tqdm(range(start, total_steps), initial=start, total=total_steps, desc=stage,
             unit='step', dynamic_ncols=True, disable=not main)
  t0 = time.time()
  postfix = {}
  for step in bar:
    batch = input_pipeline.shard(batch_fn(step))
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
      mngr.save(step + 1, args=checkpoints.ocp.args.StandardSave(host_state), force=last)
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


def kl_weight(step: int, steps_per_epoch: int, anneal_epochs: int) -> float:
  """Monotonic KL annealing of the reference: (epoch + 1) / anneal_epochs, capped at 1."""
  return min((step // steps_per_epoch + 1) / anneal_epochs, 1.0)


def train_vae(config, workdir, max_steps: int | None = None):
  """Stage `vae` on the training split's ECGs. `max_steps` stops early (the schedule is unchanged),
  which is how a killed run is simulated in tests."""
  source = input_pipeline.open_split(config.data, 'train')
  n = len(source)
  batch_size = config.vae.batch_size
  rows = input_pipeline.process_rows(batch_size)
  per_epoch = input_pipeline.steps_per_epoch(n, batch_size)
  total = per_epoch * config.vae.epochs
  vae, state = vae_state(config, total)
  lr_fn = steps.onecycle_schedule(total, config.vae.learning_rate, config.vae.peak_learning_rate)
  log_main(f'[vae] {factory.count_params(state.params):,} parameters, {n} training ECGs, '
           f'{total} steps of batch {batch_size} on {describe_devices()}')

  def batch_fn(step):
    index = input_pipeline.batch_indices(step, n, batch_size, config.seed)[rows]
    return dict(ecg=input_pipeline.read_rows(source, index, 'ecg'),
                example_index=np.arange(batch_size)[rows])

  def step_args(step):
    return dict(kl_weight=config.vae.kl_weight * kl_weight(step, per_epoch,
                                                           config.vae.kl_anneal_epochs))

  return run_loop('vae', config, workdir, state,
                  steps.make_vae_step(vae, config.vae.latent_noise), batch_fn,
                  min(total, max_steps or total), lr_fn, step_args)


def latents_path(workdir, split: str) -> Path:
  return Path(workdir) / 'latents' / f'{split}.npz'


def conditioning_record(config, missing_age: float) -> dict:
  """What the conditions of this model were made with: the text encoder, model, width and
  prompt template, and the values standing in for unknown age and sex."""
  return dict(text=text_encoders.identity(config.text), missing_age=missing_age,
              missing_sex=patient.UNKNOWN_SEX_CODE)


def describe_text(identity: dict) -> str:
  return f'{identity["encoder"]} ({identity["model"]}, {identity["dim"]}-d)'


def check_conditioning(record: dict, config, where) -> None:
  """Raises if `record` (from latents or a trained model) was made with other text settings."""
  expected = text_encoders.identity(config.text)
  if record['text'] != expected:
    field = 'prompt template' if record['text']['template'] != expected['template'] else 'encoder'
    raise ValueError(
        f'{where} was made with text encoder {describe_text(record["text"])} and its prompt '
        f'template, but the config asks for {describe_text(expected)}; the {field} differs. '
        f'Use the text settings it was trained with, or re-run train.py --stage latents.')


def prompt_table(template, reports) -> tuple[list[str], np.ndarray]:
  """The distinct prompts of the records' reports (sorted) and, per record, the index of its own.
  template: the config's text.template (or its dict)."""
  prompt_text = [prompts.build_prompt(r, template) for r in reports]
  distinct = sorted(set(prompt_text))
  position = {prompt: i for i, prompt in enumerate(distinct)}
  return distinct, np.array([position[p] for p in prompt_text], np.int32)


METADATA = ('age', 'sex', 'reports', 'heart_rate', 'record_id')


def read_metadata(source, index) -> dict:
  """The non-signal fields of the examples at `index`, as read_all gives them."""
  examples = source.__getitems__([int(i) for i in index])
  return dict(age=np.array([ex['age'] for ex in examples], np.float32),
              heart_rate=np.array([ex['heart_rate'] for ex in examples], np.float32),
              sex=[ex['sex'].decode() for ex in examples],
              record_id=[ex['record_id'].decode() for ex in examples],
              reports=[[r.decode() for r in ex['reports']] for ex in examples])


def read_split_metadata(source, chunk: int = 1024) -> dict:
  """read_metadata of a whole split, read `chunk` examples at a time (memory stays flat)."""
  parts = [read_metadata(source, np.arange(start, min(start + chunk, len(source))))
           for start in range(0, len(source), chunk)]
  return {k: (np.concatenate([p[k] for p in parts]) if k in ('age', 'heart_rate')
              else sum((p[k] for p in parts), [])) for k in METADATA}


def make_latent_encoder(config, vae_params):
  """pmapped VAE encode of one global chunk: each process passes its rows (local devices,
  rows per device, 1024, 12) and gets back the latents of the whole chunk."""
  vae = factory.make_vae(config)

  def encode(ecg, noise):
    latent = vae.apply({'params': vae_params}, ecg, noise, method=vae.encode)[0]
    return jax.lax.all_gather(latent, steps.AXIS, tiled=True)

  p_encode = jax.pmap(encode, axis_name=steps.AXIS)
  return lambda ecg, noise: np.asarray(p_encode(ecg, noise).addressable_data(0))[0]


def encode_latents(config, workdir, vae_params=None) -> dict[str, Path]:
  """Pre-encodes every split once with the trained VAE (a stochastic posterior sample, x
  vae.latent_scale, as the reference) and embeds each distinct prompt once. With
  diffusion.stretch_copies > 0 the train split also gets that many time-stretched copies of each
  record, and with diffusion.shift_copies > 0 that many phase-shifted copies of each record
  (stretched copies included) after them (datasets/augmentation.py). Writes latents/<split>.npz holding
  latent (n, 128, 4), patient (n, 3: sex code, age, heart rate), the distinct prompts with their
  embeddings and each record's prompt index, the record ids, and the conditioning record (JSON).
  Training reads these; it never embeds.

  Streams: `latent_encode_batch_size` ECGs at a time, split over every device of every process
  (each process reads only its rows); process 0 reads the metadata, embeds and writes.
  """
  if vae_params is None:
    vae_params = workdir_vae_params(config, workdir)
  encode = make_latent_encoder(config, vae_params)
  main = distributed.is_main_process()
  encoder = text_encoders.make_text_encoder(config.text) if main else None
  latent_shape = factory.latent_shape(config)
  size = config.diffusion.latent_encode_batch_size
  rows = input_pipeline.process_rows(size)
  key = jax.random.PRNGKey(config.seed + 2)
  written, record = {}, None
  for split in SPLITS:  # train first: it defines the fill value for unknown ages
    source = input_pipeline.open_split(config.data, split)
    if split == 'train':
      d = config.diffusion
      source = augmentation.with_copies(source, d.stretch_copies, d.stretch_max_factor,
                                        d.shift_copies, config.seed)
    n = len(source)
    latents = []
    for start in tqdm(range(0, n, size), desc=f'encode {split}', unit='batch', leave=False,
                      disable=not main):
      chunk = np.arange(start, min(start + size, n))
      mine = np.arange(start, start + size)[rows]  # past the end: padding (one shape, one compile)
      ecg = np.zeros((len(mine), preprocessing.NUM_SAMPLES, 12), np.float32)
      real = mine < n
      if real.any():
        ecg[real] = input_pipeline.read_rows(source, mine[real], 'ecg')
      noise = np.asarray(jax.random.normal(jax.random.fold_in(key, start),
                                           (size,) + latent_shape))[rows]
      latents.append(encode(*input_pipeline.shard((ecg, noise)))[:len(chunk)])
    if main:
      data = read_split_metadata(source)
      if record is None:
        record = conditioning_record(config, patient.missing_age_fill(data['age']))
      written[split] = write_latents(config, workdir, split, record, encoder,
                                     np.concatenate(latents), data)
  distributed.barrier('latents written')
  return written


def write_latents(config, workdir, split, record, encoder, latent, data) -> Path:
  distinct, prompt_index = prompt_table(config.text.template, data['reports'])
  embeddings = encoder.encode(distinct, progress=True)
  unknown_age = int(np.sum(~np.isfinite(data['age'])))
  unknown_sex = sum(s not in patient.SEX_CODES for s in data['sex'])
  if unknown_age or unknown_sex:
    log.warning('%s: %d unknown age(s) filled with %.1f years, %d unknown sex(es) coded %.1f',
                split, unknown_age, record['missing_age'], unknown_sex, record['missing_sex'])
  patient_values = np.stack([patient.sex_codes(data['sex']),
                             patient.fill_ages(data['age'], record['missing_age']),
                             np.asarray(data['heart_rate'], np.float32)], axis=1)
  if not np.all(np.isfinite(patient_values)):
    raise ValueError(f'{split}: heart rates must be finite (and ages after filling)')
  path = latents_path(workdir, split)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.tmp.npz')
  np.savez(tmp, latent=latent, patient=patient_values, prompts=np.array(distinct),
           text_embedding=embeddings, prompt_index=prompt_index,
           record_id=np.array(data['record_id']), conditioning=np.array(json.dumps(record)))
  tmp.replace(path)
  return path


def latent_conditions(data: dict, index) -> np.ndarray:
  """Condition vectors (len(index), d_text + 3) of latents-file rows: each record's prompt
  embedding, then sex, age, heart rate (built per batch: MIMIC-scale files would not hold them
  whole)."""
  return np.concatenate([data['text_embedding'][data['prompt_index'][index]],
                         data['patient'][index]], axis=1).astype(np.float32)


def conditioning_path(workdir, stage: str = 'diffusion') -> Path:
  """The conditioning record of the trained U-Net or CLIP model (written when training starts)."""
  return Path(workdir) / stage / 'conditioning.json'


def load_latents(workdir, split: str) -> dict:
  path = latents_path(workdir, split)
  if not path.exists():
    raise FileNotFoundError(f'{path} not found; encode the latents first with python train.py ... '
                            f'--stage latents (the vae and all stages also write them)')
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def train_diffusion(config, workdir, max_steps: int | None = None):
  """Stage `diffusion` on the pre-encoded training latents."""
  data = load_latents(workdir, 'train')
  record = json.loads(str(data['conditioning']))
  check_conditioning(record, config, f'the training latents in {latents_path(workdir, "train")}')
  checkpoints.write_atomic(conditioning_path(workdir), json.dumps(record, indent=1))
  batch_size = config.diffusion.batch_size
  n = len(data['latent'])
  per_epoch = input_pipeline.steps_per_epoch(n, batch_size)
  total = per_epoch * config.diffusion.epochs
  unet, state = initial_unet_state(config, total)
  d = config.diffusion
  lr_fn = steps.cosine_schedule(total, d.learning_rate, d.final_lr_fraction)
  log_main(f'[diffusion] {factory.count_params(state.params):,} parameters, {n} training '
           f'latents (std {data["latent"].std():.3f}), {total} steps of batch {batch_size} on '
           f'{describe_devices()}')

  rows = input_pipeline.process_rows(batch_size)

  def batch_fn(step):
    index = input_pipeline.batch_indices(step, n, batch_size, config.seed)[rows]
    return dict(latent=data['latent'][index], cond=latent_conditions(data, index),
                example_index=np.arange(batch_size)[rows])

  schedule = schedule_from_config(config)
  p_step = steps.make_diffusion_step(unet, schedule, d.condition_dropout, d.ema_decay,
                                    d.min_snr_gamma)
  return run_loop('diffusion', config, workdir, state, p_step, batch_fn,
                  min(total, max_steps or total), lr_fn,
                  evaluate_fn=heldout_evaluator(config, workdir, unet, schedule, data))


def heldout_evaluator(config, workdir, unet, schedule, train_data):
  """The held-out diffusion loss on the val latents (training.heldout), or None where the
  workdir has none or train.heldout_every_steps is 0."""
  if config.train.heldout_every_steps <= 0 or not latents_path(workdir, 'val').exists():
    return None
  val = load_latents(workdir, 'val')

  def split(data):  # the first train.heldout_records records
    index = np.arange(min(len(data['latent']), config.train.heldout_records))
    return dict(latent=data['latent'][index], cond=latent_conditions(data, index))

  return heldout_loss.make_evaluator(unet, schedule, split(val), split(train_data),
                                     seed=config.seed + 7,
                                     batch_size=config.diffusion.batch_size)


def embed_reports(config, reports, encoder=None) -> np.ndarray:
  """Text embeddings (n, d_text) of each record's prompt, embedding each distinct prompt once."""
  encoder = encoder or text_encoders.make_text_encoder(config.text)
  distinct, prompt_index = prompt_table(config.text.template, reports)
  return encoder.encode(distinct, progress=True)[prompt_index]


def train_clip(config, workdir, max_steps: int | None = None):
  """Stage `clip`: the ECG-text contrastive model, on the real training split (ECGs and the
  embeddings of their prompts). It records its text encoder, which the evaluation checks."""
  source = input_pipeline.open_split(config.data, 'train')
  n = len(source)
  text = embed_reports(config, read_split_metadata(source)['reports'])
  checkpoints.write_atomic(conditioning_path(workdir, 'clip'),
                           json.dumps(dict(text=text_encoders.identity(config.text)), indent=1))
  batch_size = config.clip.batch_size
  rows = input_pipeline.process_rows(batch_size)
  per_epoch = input_pipeline.steps_per_epoch(n, batch_size)
  total = per_epoch * config.clip.epochs
  clip, state = clip_state(config, total)
  c = config.clip
  lr_fn = steps.cosine_schedule(total, c.learning_rate, c.final_lr_fraction)
  log_main(f'[clip] {factory.count_params(state.params):,} parameters, {n} training pairs, '
           f'{total} steps of batch {batch_size} on {describe_devices()}')

  def batch_fn(step):
    index = input_pipeline.batch_indices(step, n, batch_size, config.seed + 3)[rows]
    return dict(ecg=input_pipeline.read_rows(source, index, 'ecg'), text=text[index])

  return run_loop('clip', config, workdir, state, steps.make_clip_step(clip), batch_fn,
                  min(total, max_steps or total), lr_fn)


STAGES = ('vae', 'latents', 'diffusion', 'clip', 'all')


def train_and_evaluate(config, workdir, stage: str = 'all'):
  """Runs `stage` (one of STAGES; 'all' is vae, latents, diffusion, then clip) in workdir;
  returns the workdir. With train.init_from set, 'all' encodes the latents with the VAE of the
  model it names instead of training one."""
  workdir = Path(workdir)
  if stage not in STAGES:
    raise ValueError(f'stage must be one of {STAGES}, got {stage!r}')
  if config.text.encoder == 'openai' and stage != 'diffusion':
    openai_encoder.api_key()  # fail now, not after the VAE has trained for hours
  from_pretrained = bool(config.train.init_from)
  if from_pretrained and stage == 'vae':
    raise ValueError(f"train.init_from={config.train.init_from!r} takes the VAE of "
                     f"{init_source_name(config)}: there is no vae stage to run; use --stage "
                     f"latents (or all) to encode the latents with it")
  workdir.mkdir(parents=True, exist_ok=True)
  checkpoints.save_config(workdir, config)
  if stage == 'latents' or (stage == 'all' and from_pretrained):
    encode_latents(config, workdir)
  elif stage in ('vae', 'all'):
    state = train_vae(config, workdir)
    encode_latents(config, workdir, state.params)
  if stage in ('diffusion', 'all'):
    train_diffusion(config, workdir)
  if stage in ('clip', 'all'):
    train_clip(config, workdir)
  return workdir
