"""Throughput on whatever backend JAX sees (cpu, gpu, tpu): end-to-end sampling and paper-size
training, float32 and bfloat16, each convolution form.

  python benchmarks/throughput.py --out benchmarks/results/throughput_gpu.json     # GPU or TPU host
  python benchmarks/throughput.py --batch 1 16 64 --max_call_s 20 --train_batches 8 \
      --out benchmarks/results/throughput_cpu.json                               # a small CPU

Sampling: ECGs per second, end to end (the sampler's `lax.scan` of U-Net steps, then the VAE
decode), for DDPM (1000 steps) and DDIM (--ddim_steps), through the program sample.py runs
(`Generator.compiled_sampler`), its batch split over every local device. Training: examples per second
of the trainer's pmapped VAE and diffusion steps, per device and over all local devices, at
each per-device batch of --train_batches (default: doubling from 16 until memory runs out);
the largest batch that fits is reported. Weights are random, paper size (configs/diffusets.py,
text width 1536): the values do not change the cost.

Method: compile time (lower + compile) is reported apart; a warm-up call, then the median of
--repeats calls, each ended by `block_until_ready`. A configuration that runs out of device
memory is recorded, and larger batches of it are not tried. On a slow backend, a batch whose
call would take longer than --max_call_s (predicted from the last batch, linearly) is recorded
as skipped. Memory: XLA's own figure for each compiled program (arguments + outputs + temporaries,
`compiled.memory_analysis()`), and the device's peak so far where it reports one
(`device.memory_stats()`, GPU and TPU).

Writes JSON and a markdown table beside it (.md) with the device, versions and command.
"""
import argparse
import gc
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks')]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import environment  # noqa: E402  (benchmarks/environment.py)
from diffusets_jax import batching, train_state  # noqa: E402
from diffusets_jax.conditioning.record import conditioning_record  # noqa: E402
from diffusets_jax.diffusion.schedule import schedule_from_config  # noqa: E402
from diffusets_jax.generate import Generator  # noqa: E402
from diffusets_jax.models import factory, layers  # noqa: E402
from diffusets_jax.store import TrainedModel  # noqa: E402
from diffusets_jax.training import steps  # noqa: E402

OUT_OF_MEMORY = ('RESOURCE_EXHAUSTED', 'Out of memory', 'out of memory', 'OOM')


def is_out_of_memory(error: Exception) -> bool:
  return any(marker in str(error) for marker in OUT_OF_MEMORY)


def paper_config(precision: str, conv_form: str, size: str = 'paper'):
  config = environment.benchmark_config(size)
  config.precision, config.conv_form = precision, conv_form
  return config


def program_bytes(compiled) -> int | None:
  """Arguments + outputs + temporaries of one compiled program, as XLA plans them."""
  try:
    analysis = compiled.memory_analysis()
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes +
               analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
  except Exception:  # not every backend and version reports it
    return None


def device_peak_bytes() -> int | None:
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def timed(call, repeats: int) -> float:
  """Median seconds of `repeats` calls after one warm-up call, each ended by block_until_ready."""
  return environment.first_and_median_seconds(call, jax.block_until_ready, repeats)[1]


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def sampling_rows(precision, conv_form, sampler, batches, args, weights):
  """One row per batch: ECGs/s end to end, or why there is no figure."""
  config = paper_config(precision, conv_form, args.size)
  vae_params, unet_params = weights
  generator = Generator(TrainedModel(config, vae_params, unet_params,
                                     conditioning_record(config, 50.0)))
  settings = generator.settings(sampler, args.ddim_steps, guidance_scale=args.guidance_scale)
  label = (f'ddpm-{config.diffusion.num_timesteps}' if sampler == 'ddpm'
           else f'ddim-{settings.steps}')
  rows, last = [], None
  for batch in batches:
    row = dict(section='sampling', sampler=label, precision=precision,
               conv_form=layers.conv_form_for(conv_form), batch=batch,
               devices=len(generator.devices))
    if last and last['seconds'] * batch / last['batch'] > args.max_call_s:
      row['skipped'] = (f"predicted {last['seconds'] * batch / last['batch']:.0f} s per call > "
                        f'--max_call_s {args.max_call_s:g}')
      record(rows, row)
      continue
    batch = batching.round_to_devices(batch, len(generator.devices))
    rng = np.random.default_rng(batch)
    cond = np.concatenate([0.03 * rng.standard_normal((batch, config.text.dim)),
                           np.tile([[1.0, 60.0, 70.0]], (batch, 1))], 1).astype(np.float32)
    try:
      start = time.perf_counter()
      sample = generator.compiled_sampler(batch, settings)
      row['compile_s'] = round(time.perf_counter() - start, 2)
      seconds = timed(lambda: sample(cond, jax.random.PRNGKey(0)), args.repeats)
    except Exception as error:  # noqa: BLE001  (recorded, then the next configuration)
      row['error'] = 'out of device memory' if is_out_of_memory(error) else \
          f'{type(error).__name__}: {str(error)[:200]}'
      record(rows, row)
      if is_out_of_memory(error):
        break
      continue
    row.update(seconds=round(seconds, 4), ecgs_per_s=round(batch / seconds, 2),
               program_mib=mib(program_bytes(sample.compiled)),
               device_peak_mib=mib(device_peak_bytes()))
    record(rows, row)
    last = row
  return rows


def record(rows: list, row: dict) -> None:
  rows.append(row)
  print(json.dumps(row), flush=True)


def mib(num_bytes):
  return None if num_bytes is None else round(num_bytes / 2 ** 20, 1)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def training_batch(stage: str, per_device: int, config):
  """A random global batch laid out for the pmapped step: (devices, per_device, ...)."""
  devices = jax.local_device_count()
  rng = np.random.default_rng(0)
  index = np.arange(per_device * devices).reshape(devices, per_device)
  if stage == 'vae':
    ecg = 0.3 * rng.standard_normal((devices, per_device, 1024, 12))
    return dict(ecg=ecg.astype(np.float32), example_index=index)
  latent = rng.standard_normal((devices, per_device) + factory.latent_shape(config))
  cond = np.concatenate([0.03 * rng.standard_normal((devices, per_device, config.text.dim)),
                         np.broadcast_to([1.0, 60.0, 70.0], (devices, per_device, 3))], -1)
  return dict(latent=latent.astype(np.float32), cond=cond.astype(np.float32),
              example_index=index)


def training_rows(stage, precision, conv_form, per_device_batches, args):
  """Examples/s of one pmapped training step at each per-device batch, until memory runs out."""
  config = paper_config(precision, conv_form, args.size)
  devices = jax.local_device_count()
  if stage == 'vae':
    model, state = train_state.vae_state(config, 1000)
    step = steps.make_vae_step(model)
    extra = (jnp.float32(1.0),)  # kl_weight
  else:
    model, state = train_state.unet_state(config, 1000)
    step = steps.make_diffusion_step(model, schedule_from_config(config))
    extra = ()
  rows, last = [], None
  for per_device in per_device_batches:
    row = dict(section='training', stage=stage, precision=precision,
               conv_form=layers.conv_form_for(conv_form), per_device_batch=per_device,
               devices=devices, global_batch=per_device * devices)
    if last and last['seconds'] * per_device / last['per_device_batch'] > args.max_call_s:
      row['skipped'] = f'predicted step time > --max_call_s {args.max_call_s:g}'
      record(rows, row)
      break
    try:
      batch = jax.tree_util.tree_map(jnp.asarray, training_batch(stage, per_device, config))
      replicated = [steps.replicate(state)]  # donated by each step: re-bound after it
      key = jax.random.PRNGKey(0)
      start = time.perf_counter()
      compiled = step.lower(replicated[0], batch, key, *extra).compile()
      row['compile_s'] = round(time.perf_counter() - start, 2)

      def call():
        replicated[0], metrics = compiled(replicated[0], batch, key, *extra)
        return metrics

      seconds = timed(call, args.repeats)
      loss = float(np.asarray(call()['loss']).ravel()[0])
    except Exception as error:  # noqa: BLE001
      row['error'] = 'out of device memory' if is_out_of_memory(error) else \
          f'{type(error).__name__}: {str(error)[:200]}'
      record(rows, row)
      break
    if not np.isfinite(loss):
      raise SystemExit(f'{stage} {precision} batch {per_device}: loss is {loss}')
    row.update(seconds=round(seconds, 4),
               examples_per_s=round(per_device * devices / seconds, 1),
               examples_per_s_per_device=round(per_device / seconds, 1),
               program_mib=mib(program_bytes(compiled)), device_peak_mib=mib(device_peak_bytes()))
    record(rows, row)
    last = row
  fitted = [r for r in rows if 'seconds' in r]
  if fitted:
    best = max(fitted, key=lambda r: r['per_device_batch'])
    best['largest_batch_that_fits'] = not any('error' in r for r in rows) and \
        len(fitted) == len(per_device_batches)  # False: memory or time stopped the search
  return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def to_markdown(report: dict) -> str:
  env = report['environment']
  lines = [f"# {report['benchmark']}", '',
           f"Device: {env['device_count']} x {env['device_kind']} ({env['backend']}); JAX "
           f"{env['jax']}, jaxlib {env['jaxlib']}, Flax {env['flax']}, Python {env['python']}; "
           f"{env['platform']}.", '', f"Command: `{report['command']}`", '',
           '## Sampling, end to end (U-Net loop + VAE decode), ECGs per second', '',
           '| sampler | precision | conv form | batch | ECGs/s | s per call | compile s | '
           'program MiB | device peak MiB |', '|---|---|---|---|---|---|---|---|---|']
  for r in report['sampling']:
    figure = r.get('ecgs_per_s', r.get('error', r.get('skipped', '')))
    lines.append(f"| {r['sampler']} | {r['precision']} | {r['conv_form']} | {r['batch']} | "
                 f"{figure} | {r.get('seconds', '')} | {r.get('compile_s', '')} | "
                 f"{r.get('program_mib', '')} | {r.get('device_peak_mib', '') or ''} |")
  lines += ['', '## Training, paper size, examples per second', '',
            '| stage | precision | conv form | batch per device | devices | examples/s | '
            'per device | s per step | compile s | program MiB |',
            '|---|---|---|---|---|---|---|---|---|---|']
  for r in report['training']:
    figure = r.get('examples_per_s', r.get('error', r.get('skipped', '')))
    lines.append(f"| {r['stage']} | {r['precision']} | {r['conv_form']} | "
                 f"{r['per_device_batch']} | {r['devices']} | {figure} | "
                 f"{r.get('examples_per_s_per_device', '')} | {r.get('seconds', '')} | "
                 f"{r.get('compile_s', '')} | {r.get('program_mib', '')} |")
  if report['faster_conv_form']:
    lines += ['', '## Faster convolution form (median ratio over the configurations measured in '
              'both)', '']
    lines += [f"- {part}: {v['faster']} ({v['speedup']}x over {v['slower']}, {v['pairs']} pairs)"
              for part, v in report['faster_conv_form'].items()]
  return '\n'.join(lines) + '\n'


def faster_conv_form(rows: list, key: str, group: tuple) -> dict | None:
  """Which conv form gives more throughput, from configurations measured in both forms."""
  by = {}
  for r in rows:
    if key in r:
      by.setdefault(tuple(r[g] for g in group), {})[r['conv_form']] = r[key]
  pairs = [v for v in by.values() if len(v) == 2]
  if not pairs:
    return None
  ratio = float(np.median([v['xla'] / v['matmul'] for v in pairs]))
  faster, slower = ('xla', 'matmul') if ratio >= 1 else ('matmul', 'xla')
  return dict(faster=faster, slower=slower, speedup=round(max(ratio, 1 / ratio), 2),
              pairs=len(pairs))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--sections', nargs='+', default=['sampling', 'training'],
                      choices=['sampling', 'training'])
  parser.add_argument('--samplers', nargs='+', default=['ddpm', 'ddim'], choices=['ddpm', 'ddim'])
  parser.add_argument('--ddim_steps', type=int, default=50)
  parser.add_argument('--batch', type=int, nargs='+', default=[1, 16, 64, 256, 512],
                      help='sampling batches (rounded up to a multiple of the device count)')
  parser.add_argument('--precision', nargs='+', default=['float32', 'bfloat16'],
                      choices=list(layers.PRECISIONS))
  parser.add_argument('--conv_forms', nargs='+', default=['matmul', 'xla'],
                      choices=['matmul', 'xla', 'auto'])
  parser.add_argument('--stages', nargs='+', default=['vae', 'diffusion'],
                      choices=['vae', 'diffusion'])
  parser.add_argument('--train_batches', type=int, nargs='+', default=None,
                      help='per-device training batches to try, in order (default: 16, 32, ... '
                      '8192, until memory runs out)')
  parser.add_argument('--guidance_scale', type=float, default=1.0,
                      help='1: unguided (one U-Net pass per step); otherwise the batched '
                      'conditional + unconditional pass')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--size', default='paper', choices=environment.SIZES,
                      help='paper: the reference models; micro: tiny ones, to check on a CPU '
                      'that the benchmark runs')
  parser.add_argument('--max_call_s', type=float, default=600.0,
                      help='skip a configuration whose call is predicted to take longer')
  parser.add_argument('--out', default=f'benchmarks/results/throughput_{jax.default_backend()}.json')
  args = parser.parse_args()
  if args.guidance_scale != 1.0:
    raise SystemExit('--guidance_scale other than 1 needs a model with a null condition; the '
                     'paper-size config has none (time a guided workdir with sample.py)')

  print(f'{jax.local_device_count()} x {jax.local_devices()[0].device_kind} '
        f'({jax.default_backend()}); JAX {jax.__version__}', flush=True)
  weights = None
  if 'sampling' in args.sections:
    config = paper_config('float32', 'auto', args.size)
    weights = (factory.init_vae(config, jax.random.PRNGKey(1)),
               factory.init_unet(config, jax.random.PRNGKey(0)))
  sampling, training = [], []
  command = ' '.join(['python'] + sys.argv)
  for precision, conv_form in itertools.product(args.precision, args.conv_forms):
    if 'sampling' in args.sections:
      for sampler in args.samplers:
        sampling += sampling_rows(precision, conv_form, sampler, args.batch, args, weights)
        release_programs()
    if 'training' in args.sections:
      batches = args.train_batches or [16 * 2 ** i for i in range(10)]
      for stage in args.stages:
        training += training_rows(stage, precision, conv_form, batches, args)
        release_programs()
    # Written after each configuration, so that a run stopped part way keeps what it measured.
    markdown = write(report_of(sampling, training, command), args.out)
  print(markdown)
  print(f'wrote {args.out} and {Path(args.out).with_suffix(".md")}')


def release_programs():
  """Drops the compiled programs of the configurations already timed: a long run compiles
  dozens of large programs, and on CPU their machine code would otherwise pile up until the
  process runs out of memory mappings."""
  jax.clear_caches()
  gc.collect()


def report_of(sampling: list, training: list, command: str) -> dict:
  import jaxlib
  return dict(
      benchmark='diffusets-jax throughput: sampling (end to end) and paper-size training',
      environment=dict(**environment.describe(), backend=jax.default_backend(),
                       device_count=jax.local_device_count(), jaxlib=jaxlib.__version__),
      command=command, sampling=sampling, training=training,
      faster_conv_form={k: v for k, v in dict(
          sampling=faster_conv_form(sampling, 'ecgs_per_s', ('sampler', 'precision', 'batch')),
          training=faster_conv_form(training, 'examples_per_s',
                                    ('stage', 'precision', 'per_device_batch'))).items() if v},
      default_conv_form=layers.conv_form_for('auto'))


def write(report: dict, out) -> str:
  """The JSON report and its markdown table (.md beside it); returns the markdown."""
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1))
  markdown = to_markdown(report)
  out.with_suffix('.md').write_text(markdown)
  return markdown


if __name__ == '__main__':
  main()
