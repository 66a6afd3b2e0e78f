"""Times our Flax U-Net and VAE decoder against the reference architecture in PyTorch on the same
device, with the same weights and inputs, and checks that their outputs agree.

The weights are the converter's export of a workdir (`--workdir`, exported on the fly, or an
existing export folder `--export`); without either, a random paper-size model (text width 1536)
is built and exported the same way. PyTorch runs eager and under `torch.compile`, float32 and
bfloat16 (autocast); ours runs jitted, float32 and bfloat16 (config.precision). With
`--reference_code PATH` (a clone of the authors' repository) their own classes are timed too.

  python benchmarks/pytorch_reference/side_by_side.py --batch 1 64 \
      --out benchmarks/results/side_by_side_cpu.json

Figures: milliseconds per U-Net step (one noise prediction for the whole batch) and per VAE
decode of the batch; median of --repeats timed calls after a warm-up call, each ended by
`block_until_ready` (JAX) or `torch.cuda.synchronize` (PyTorch on CUDA); compile times apart.
"""
import argparse
import contextlib
import copy
import importlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks')]

import torch  # noqa: E402
import jax  # noqa: E402

import environment  # noqa: E402  (benchmarks/environment.py)
from benchmarks.pytorch_reference import models  # noqa: E402
from diffusets_jax import config_schema, train_state  # noqa: E402
from diffusets_jax.conversion import reference_checkpoints as ref  # noqa: E402
from diffusets_jax.diffusion.schedule import schedule_from_config  # noqa: E402
from diffusets_jax.models import factory  # noqa: E402
from diffusets_jax.store import open_model  # noqa: E402
from diffusets_jax.store.reference import export_reference  # noqa: E402
from diffusets_jax.store import workdir as workdirs  # noqa: E402
from diffusets_jax.training import steps  # noqa: E402

FLOAT32_AGREEMENT = 1e-4  # relative L2 error of our float32 output against PyTorch's


def median_ms(call, sync, repeats: int) -> tuple[float, float]:
  """(first call's seconds, i.e. compile plus one run; median milliseconds of the repeats)."""
  first_s, median_s = environment.first_and_median_seconds(call, sync, repeats)
  return first_s, 1000 * median_s


def relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def random_states(size: str = 'paper') -> tuple[dict, dict]:
  """Random weights of the benchmark size as the converter exports them."""
  config = environment.benchmark_config(size)
  to_torch = lambda sd: {k: torch.from_numpy(np.array(v, np.float32)) for k, v in sd.items()}
  unet = ref.unet_to_reference(jax.device_get(factory.init_unet(config, jax.random.PRNGKey(0))))
  vae = ref.vae_to_reference(jax.device_get(factory.init_vae(config, jax.random.PRNGKey(1))))
  return to_torch(unet), {part: to_torch(sd) for part, sd in vae.items()}


def load_export(folder: Path):
  unet_file = next(folder.glob('unet_all.*'))
  vae_file = next(folder.glob('vae_model.*'))
  return models.read_state(unet_file), models.read_state(vae_file)


def flax_twins(unet_state: dict, vae_state: dict, groups: int):
  """(config, U-Net variables, VAE params) of our models holding the same weights as the state
  dicts, through the converter's import path; sizes are read from the tensors' shapes."""
  torch_unet = models.unet_from_state(unet_state)
  encoder, _ = models.vae_from_state(vae_state, groups)
  config = config_schema.reference_config()
  config.unet.num_levels = len(torch_unet.downsampling_blocks) + 1
  config.unet.kernel = torch_unet.downsampling_blocks[0].block.pre_shortcut_convs.kernel_size[0]
  config.unet.bottleneck_attention_hidden = torch_unet.bottelneck.self_attention.to_q.out_features
  config.vae.channels = (encoder[0].out_channels, encoder[4].conv_1.out_channels,
                         encoder[7].conv_1.out_channels)
  config.vae.groups = groups
  d_c = torch_unet.bottelneck.cross_attention.value_combiner.in_features
  config.text.encoder, config.text.dim = 'hashing', d_c - 3
  numpy_state = lambda sd: {k: v.float().numpy() for k, v in sd.items()}
  unet_params = ref.unet_from_reference(
      numpy_state(unet_state),
      jax.eval_shape(lambda: factory.init_unet(config, jax.random.PRNGKey(0))))
  vae_params = ref.vae_from_reference(
      {part: numpy_state(sd) for part, sd in vae_state.items()},
      jax.eval_shape(lambda: factory.init_vae(config, jax.random.PRNGKey(0))))
  tables = {k: v.float().numpy() for k, v in unet_state.items() if k.endswith('embeddings')}
  unet_variables = {'params': unet_params,
                    'time_tables': ref.time_tables_tree(tables, unet_params)}
  return config, unet_variables, vae_params


def compiled(module, mode: str):
  """The module as PyTorch runs it in `mode`: eager, compile (torch.compile's default), or
  reduce-overhead (CUDA graphs on a GPU)."""
  if mode == 'eager':
    return module
  return torch.compile(module, mode=None if mode == 'compile' else mode)


def torch_inputs(batch: int, d_c: int, latent_channels: int, device):
  rng = np.random.default_rng(0)
  z = rng.standard_normal((batch, 128, latent_channels)).astype(np.float32)
  t = rng.integers(0, 1000, batch)
  c = rng.standard_normal((batch, d_c)).astype(np.float32)
  c[:, -3:] = [1.0, 60.0, 70.0]  # sex, age, heart rate as the reference feeds them (raw)
  return z, t, c


def training_step_rows(batch: int, config, unet_params, torch_unet, sync_torch, device,
                       args) -> list:
  """One diffusion training step (noise, U-Net forward and backward, AdamW update) in each of
  --train_precision: ours is the trainer's pmapped step on one device (config.precision);
  PyTorch's the same loss in each --torch_modes, under autocast for bfloat16. Both start from
  the same weights; the loss values are not compared (each framework draws its own t and
  noise)."""
  rows = []
  rng = np.random.default_rng(1)
  d_c = torch_unet.bottelneck.cross_attention.value_combiner.in_features
  latent = (0.3 * rng.standard_normal((batch, 128, 4))).astype(np.float32)
  cond = torch_inputs(batch, d_c, 4, 'cpu')[2]
  batch_tree = dict(latent=latent[None], cond=cond[None], example_index=np.arange(batch)[None])
  key = jax.random.PRNGKey(0)
  betas = torch.linspace(config.diffusion.beta_start, config.diffusion.beta_end,
                         config.diffusion.num_timesteps, dtype=torch.float64)
  alpha_bar = torch.cumprod(1 - betas, 0).float().to(device)
  z0 = torch.from_numpy(latent).transpose(1, 2).contiguous().to(device)
  c = torch.from_numpy(cond).to(device)

  def record(framework, mode, precision, timed=None, error=None):
    row = dict(batch=batch, framework=framework, mode=mode, precision=precision,
               part='diffusion_train_step')
    if error is None:
      first, ms = timed
      row.update(ms=round(ms, 3), first_call_s=round(first, 2))
    else:
      row['error'] = f'{type(error).__name__}: {str(error)[:300]}'
    rows.append(row)
    print(json.dumps(row), flush=True)

  for precision in args.train_precision:
    precise = config.copy_and_resolve_references()
    precise.precision = precision
    unet, state = train_state.unet_state(precise, 1000)
    state = state.replace(params=unet_params)  # the weights the PyTorch module holds
    step = steps.make_diffusion_step(unet, schedule_from_config(precise))
    replicated = [steps.replicate(state)]

    def ours():
      replicated[0], metrics = step(replicated[0], batch_tree, key)
      return metrics

    record('flax', 'jit', precision, median_ms(ours, jax.block_until_ready, args.repeats))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == 'bfloat16'
                else contextlib.nullcontext())
    for mode in args.torch_modes:
      model = copy.deepcopy(torch_unet).to(device).train()
      optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
      forward = compiled(model, mode)

      def theirs():
        t = torch.randint(1, 999, (batch,), device=device)
        noise = torch.randn_like(z0)
        a = alpha_bar[t][:, None, None]
        with autocast:
          prediction = forward(a.sqrt() * z0 + (1 - a).sqrt() * noise, t, c)
        loss = ((prediction.float() - noise) ** 2).sum((1, 2)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

      try:
        record('pytorch_reference', mode, precision, median_ms(theirs, sync_torch, args.repeats))
      except Exception as error:  # noqa: BLE001  (e.g. torch.compile without a compiler)
        record('pytorch_reference', mode, precision, error=error)
  return rows


def authors_classes(path: str):
  """The authors' U-Net and VAE decoder classes from their repository at `path`."""
  sys.path.insert(0, str(Path(path).resolve()))
  errors = []
  for module_name in ('unet.unet_conditional', 'unet.conditional_unet_patient_3'):
    try:
      unet_class = importlib.import_module(module_name).ECGconditional
      break
    except (ImportError, AttributeError) as error:
      errors.append(f'{module_name}: {error}')
  else:
    raise SystemExit(f'--reference_code {path}: no ECGconditional class found ({"; ".join(errors)})')
  try:
    decoder_class = importlib.import_module('vae.vae_model').VAE_Decoder
  except (ImportError, AttributeError) as error:
    raise SystemExit(f'--reference_code {path}: no vae.vae_model.VAE_Decoder ({error})')
  return unet_class, decoder_class


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  weights = parser.add_mutually_exclusive_group()
  weights.add_argument('--workdir', help='trained workdir: exported with the converter first')
  weights.add_argument('--export', help='folder with unet_all.(pth|safetensors) and vae_model.*')
  parser.add_argument('--vae_groups', type=int, default=None,
                      help='GroupNorm groups of the VAE (default: the workdir config\'s, else 32)')
  parser.add_argument('--batch', type=int, nargs='*', default=[1, 64],
                      help='U-Net step and decode batches (none: training rows only)')
  parser.add_argument('--size', default='paper', choices=environment.SIZES,
                      help='size of the random weights without --workdir or --export')
  parser.add_argument('--precision', nargs='+', default=['float32', 'bfloat16'],
                      choices=['float32', 'bfloat16'])
  parser.add_argument('--torch_modes', nargs='+', default=['eager', 'compile'],
                      choices=['eager', 'compile', 'reduce-overhead'],
                      help='reduce-overhead: torch.compile with CUDA graphs on a GPU')
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--device', default=None, help='PyTorch device (default: cuda if JAX '
                      'runs on a GPU, else cpu)')
  parser.add_argument('--reference_code', metavar='PATH',
                      help="a clone of the authors' DiffuSETS repository: time their classes too")
  parser.add_argument('--no_vae', action='store_true', help='time the U-Net step only')
  parser.add_argument('--train_batch', type=int, nargs='*', default=[64],
                      help='also time one diffusion training step (forward, backward, AdamW) '
                      'at these batches (none: skip)')
  parser.add_argument('--train_precision', nargs='+', default=['float32'],
                      choices=['float32', 'bfloat16'], help='precisions of the training step')
  parser.add_argument('--out', default='benchmarks/results/side_by_side.json')
  args = parser.parse_args()

  device = torch.device(args.device or ('cuda' if jax.default_backend() == 'gpu' else 'cpu'))
  sync_torch = (lambda x: torch.cuda.synchronize()) if device.type == 'cuda' else (lambda x: x)
  sync_jax = lambda x: jax.block_until_ready(x)

  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    groups = args.vae_groups
    if args.export:
      source = f'export {args.export}'
      unet_state, vae_state = load_export(Path(args.export))
    elif args.workdir:
      source = f'workdir {args.workdir}'
      groups = groups or workdirs.load_config(args.workdir).vae.groups
      export_reference(open_model(args.workdir), tmp / 'export', 'safetensors')
      unet_state, vae_state = load_export(tmp / 'export')
    else:
      source = f'random {args.size}-size weights'
      unet_state, vae_state = random_states(args.size)
      groups = groups or environment.benchmark_config(args.size).vae.groups
    groups = groups or 32
    torch_unet = models.unet_from_state(unet_state).to(device)
    torch_decoder = models.vae_from_state(vae_state, groups)[1].to(device)
    config, unet_variables, vae_params = flax_twins(unet_state, vae_state, groups)
    d_c = factory.condition_dim(config)

  authors = None
  if args.reference_code:
    unet_class, decoder_class = authors_classes(args.reference_code)
    theirs = unet_class(1000, kernel_size=config.unet.kernel, num_levels=config.unet.num_levels,
                        n_channels=4, text_embed_dim=d_c - 3)
    theirs.load_state_dict(unet_state, strict=True)
    their_decoder = decoder_class()
    their_decoder.load_state_dict(vae_state['decoder'], strict=True)
    authors = (theirs.eval().to(device), their_decoder.eval().to(device))

  rows, agreement = [], []
  for batch in args.batch:
    z, t, c = torch_inputs(batch, d_c, 4, device)
    zt = torch.from_numpy(z).transpose(1, 2).contiguous().to(device)
    tt, ct = torch.from_numpy(t).to(device), torch.from_numpy(c).to(device)
    latent = 0.2 * zt
    outputs = {}

    def record(framework, mode, precision, part, first_s, ms, output):
      rows.append(dict(batch=batch, framework=framework, mode=mode, precision=precision,
                       part=part, ms=round(ms, 3), first_call_s=round(first_s, 2)))
      outputs[(framework, mode, precision, part)] = np.asarray(output, np.float32)
      print(json.dumps(rows[-1]), flush=True)

    for precision in args.precision:
      unet = factory.make_unet(config, precision)
      step = jax.jit(lambda v, z, t, c: unet.apply(v, z, t, c))
      first, ms = median_ms(lambda: step(unet_variables, z, t, c), sync_jax, args.repeats)
      record('flax', 'jit', precision, 'unet_step', first, ms,
             np.asarray(step(unet_variables, z, t, c)))
      if not args.no_vae:
        vae = factory.make_vae(config, precision)
        decode = jax.jit(lambda p, z: vae.apply({'params': p}, z, method=vae.decode))
        z0 = np.asarray(latent.transpose(1, 2).cpu())
        first, ms = median_ms(lambda: decode(vae_params, z0), sync_jax, args.repeats)
        record('flax', 'jit', precision, 'vae_decode', first, ms,
               np.asarray(decode(vae_params, z0))[:, :, ref.REFERENCE_LEAD_ORDER])

      autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == 'bfloat16'
                  else contextlib.nullcontext())
      candidates = [('pytorch_reference', torch_unet, torch_decoder)]
      if authors:
        candidates.append(('authors', *authors))
      for framework, unet_module, decoder_module in candidates:
        for mode in args.torch_modes:
          try:
            run_unet = compiled(unet_module, mode)
            run_decoder = compiled(decoder_module, mode)
            if framework == 'authors':  # their interface: text (B, 1, d), patient dict (B, 1, 1)
              patient = {k: ct[:, i - 3].reshape(-1, 1, 1) for i, k in
                         enumerate(('gender', 'age', 'heart rate'))}
              call_unet = lambda: run_unet(zt, tt, ct[:, None, :-3], patient)
            else:
              call_unet = lambda: run_unet(zt, tt, ct)
            with torch.inference_mode(), autocast:
              first, ms = median_ms(call_unet, sync_torch, args.repeats)
              record(framework, mode, precision, 'unet_step', first, ms,
                     call_unet().float().transpose(1, 2).cpu())
              if not args.no_vae:
                first, ms = median_ms(lambda: run_decoder(latent), sync_torch, args.repeats)
                record(framework, mode, precision, 'vae_decode', first, ms,
                       run_decoder(latent).float().cpu())
          except Exception as error:  # e.g. torch.compile without a working compiler
            rows.append(dict(batch=batch, framework=framework, mode=mode, precision=precision,
                             error=f'{type(error).__name__}: {str(error)[:300]}'))
            print(json.dumps(rows[-1]), flush=True)

    for (framework, mode, precision, part), output in outputs.items():
      reference = outputs.get(('pytorch_reference', 'eager', 'float32', part))
      if reference is None or framework == 'pytorch_reference' and mode == 'eager' and \
          precision == 'float32':
        continue
      error = relative_error(output, reference)
      agreement.append(dict(batch=batch, framework=framework, mode=mode, precision=precision,
                            part=part, relative_error=float(f'{error:.3g}'),
                            agrees=error <= FLOAT32_AGREEMENT if precision == 'float32'
                            else None))

  for batch in args.train_batch:
    rows += training_step_rows(batch, config, unet_variables['params'], torch_unet, sync_torch,
                               device, args)

  ratios = []
  for batch in sorted(set(args.batch) | set(args.train_batch)):
    for precision in sorted(set(args.precision) | set(args.train_precision)):
      for part in ('unet_step', 'vae_decode', 'diffusion_train_step'):
        ours = [r['ms'] for r in rows if r.get('ms') and r['batch'] == batch and
                r['framework'] == 'flax' and r['precision'] == precision and r['part'] == part]
        for r in rows:
          if (r.get('ms') and r['batch'] == batch and r['framework'] != 'flax' and
              r['precision'] == precision and r['part'] == part and ours):
            ratios.append(dict(batch=batch, precision=precision, part=part,
                               against=f"{r['framework']} {r['mode']}",
                               speedup=round(r['ms'] / ours[0], 2)))
  report = dict(benchmark='Flax vs PyTorch (reference architecture), same weights and inputs',
                **environment.describe(), torch=torch.__version__, torch_device=str(device),
                weights=source, conv_form=factory.compute_settings(config)['conv_form'],
                command=' '.join(['python'] + sys.argv), timings=rows, agreement=agreement,
                speedup_of_ours=ratios,
                float32_outputs_agree=all(a['agrees'] for a in agreement
                                          if a['agrees'] is not None))
  environment.write_report(report, args.out)
  markdown = Path(args.out).with_suffix('.md')
  markdown.write_text(to_markdown(report))
  print(markdown.read_text())
  if not report['float32_outputs_agree']:
    raise SystemExit('float32 outputs disagree beyond 1e-4 relative: see "agreement"')


def to_markdown(report: dict) -> str:
  lines = [f"# {report['benchmark']}", '',
           f"Device: {report['device_kind']} (JAX {report['jax']}, Flax {report['flax']}, "
           f"PyTorch {report['torch']} on {report['torch_device']}, Python {report['python']}); "
           f"weights: {report['weights']}; conv form {report['conv_form']}.", '',
           f"Command: `{report['command']}`", '',
           '| batch | part | precision | framework | mode | ms | first call s | ours faster |',
           '|---|---|---|---|---|---|---|---|']
  for r in report['timings']:
    if 'ms' not in r:
      lines.append(f"| {r['batch']} | | {r['precision']} | {r['framework']} | {r['mode']} | "
                   f"failed: {r['error'][:80]} | | |")
      continue
    speedup = next((s['speedup'] for s in report['speedup_of_ours'] if
                    s['batch'] == r['batch'] and s['precision'] == r['precision'] and
                    s['part'] == r['part'] and s['against'] == f"{r['framework']} {r['mode']}"),
                   '')
    speedup = f'{speedup}x' if speedup else ''
    lines.append(f"| {r['batch']} | {r['part']} | {r['precision']} | {r['framework']} | "
                 f"{r['mode']} | {r['ms']} | {r['first_call_s']} | {speedup} |")
  lines += ['', '| batch | part | precision | framework | mode | relative error vs PyTorch eager '
            'float32 |', '|---|---|---|---|---|---|']
  lines += [f"| {a['batch']} | {a['part']} | {a['precision']} | {a['framework']} | {a['mode']} | "
            f"{a['relative_error']} |" for a in report['agreement']]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
