"""Whole sampling loops raced: our jitted DDIM-50 and DDPM-1000 samplers (one `lax.scan`, then
the VAE decode) against the same loops written in PyTorch over the reference-architecture twin,
with the same weights, on the same device.

  python benchmarks/pytorch_reference/loops.py --batch 1 512 \
      --out benchmarks/results/loops_gpu.json

PyTorch runs the loop as its users write it: a Python loop of U-Net calls and the sampler's
arithmetic, then the decoder; the U-Net eager, under `torch.compile`, and under
`torch.compile(mode='reduce-overhead')` (CUDA graphs on a GPU). Figures: ECGs per second end to
end (VAE decode included), median of --repeats loops after a warm-up loop, each ended by
`block_until_ready` or `torch.cuda.synchronize`; our compile time and PyTorch's first loop
(which compiles) apart. Agreement in float32: the ECGs of each PyTorch loop against ours from
the same start noise (and, for DDPM, the same per-step noise), as a relative L2 error.
Weights are random (--size paper: the reference size; micro: a CPU check).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / 'benchmarks')]

import torch  # noqa: E402
import jax  # noqa: E402

import environment  # noqa: E402  (benchmarks/environment.py)
from benchmarks.pytorch_reference import models  # noqa: E402
from diffusets_jax.conditioning.record import conditioning_record  # noqa: E402
from diffusets_jax.conversion import reference_checkpoints as ref  # noqa: E402
from diffusets_jax.generate import Generator  # noqa: E402
from diffusets_jax.models import factory  # noqa: E402
from diffusets_jax.store import TrainedModel  # noqa: E402

MODES = ('eager', 'compile', 'reduce-overhead')
AGREEMENT = 1e-2  # relative L2 error of a float32 PyTorch loop's ECGs against ours (50 to
# 1000 steps amplify the rounding differences of one step, about 1e-6)


def twin_models(config, device):
  """(our Generator, PyTorch U-Net, PyTorch decoder) holding the same random weights."""
  unet_params = factory.init_unet(config, jax.random.PRNGKey(0))
  vae_params = factory.init_vae(config, jax.random.PRNGKey(1))
  to_torch = lambda sd: {k: torch.from_numpy(np.array(v, np.float32)) for k, v in sd.items()}
  unet = models.unet_from_state(to_torch(ref.unet_to_reference(jax.device_get(unet_params))))
  vae = ref.vae_to_reference(jax.device_get(vae_params))
  decoder = models.vae_from_state({part: to_torch(sd) for part, sd in vae.items()},
                                  config.vae.groups)[1]
  generator = Generator(TrainedModel(config, vae_params, unet_params,
                                     conditioning_record(config, 50.0)))
  return generator, unet.to(device), decoder.to(device)


class TorchSampler:
  """The DDIM (eta 0) and DDPM loops of diffusion/samplers.py, in PyTorch, U-Net in (B, C, L)."""

  def __init__(self, config, device):
    d = config.diffusion
    betas = np.linspace(d.beta_start, d.beta_end, d.num_timesteps, dtype=np.float64)
    self.betas = betas.astype(np.float32).astype(np.float64)
    self.alphas = (1.0 - betas).astype(np.float32).astype(np.float64)
    self.abar = np.cumprod(1.0 - betas).astype(np.float32).astype(np.float64)
    self.num_timesteps, self.clip, self.device = d.num_timesteps, config.sampling.clip, device

  def x0(self, z, eps, t):
    a = self.abar[t]
    return ((z - (1 - a) ** 0.5 * eps) / a ** 0.5).clamp(-self.clip, self.clip)

  def ddim(self, unet, z, c, steps: int, mark_step):
    ratio = self.num_timesteps // steps
    for i in range(steps - 1, -1, -1):
      t = i * ratio
      mark_step()
      eps = unet(z, torch.full((len(z),), t, device=self.device), c)
      a_prev = self.abar[t - ratio] if t - ratio >= 0 else 1.0
      z = a_prev ** 0.5 * self.x0(z, eps, t) + (1 - a_prev) ** 0.5 * eps
    return z

  def ddpm(self, unet, z, c, mark_step, noises=None):
    """noises: (T, B, C, L) per-step draws in step order (None: torch.randn, as users do)."""
    for i, t in enumerate(range(self.num_timesteps - 1, -1, -1)):
      mark_step()
      eps = unet(z, torch.full((len(z),), t, device=self.device), c)
      a, a_prev = self.abar[t], (self.abar[t - 1] if t > 0 else 1.0)
      mean = (a_prev ** 0.5 * self.betas[t] * self.x0(z, eps, t)
              + self.alphas[t] ** 0.5 * (1 - a_prev) * z) / (1 - a)
      if t > 0:
        std = max(self.betas[t] * (1 - a_prev) / (1 - a), 1e-20) ** 0.5
        z = mean + std * (noises[i] if noises is not None else torch.randn_like(z))
      else:
        z = mean
    return z


def start_noise(sampler: str, rng, shape, num_timesteps: int):
  """The start latent and per-step noise our sampler draws from `rng` (samplers.py), (B, C, L)."""
  to_torch = lambda x: torch.from_numpy(np.asarray(x)).transpose(-1, -2).contiguous()
  if sampler == 'ddim':
    return to_torch(jax.random.normal(rng, shape)), None
  init, steps = jax.random.split(rng)
  keys = jax.random.split(steps, num_timesteps)
  noises = jax.vmap(lambda key: jax.random.normal(key, shape))(keys)
  return to_torch(jax.random.normal(init, shape)), to_torch(noises)


def race(batch: int, sampler: str, config, generator, unet, decoder, device, args) -> list:
  rows = []
  settings = generator.settings(sampler, args.ddim_steps if sampler == 'ddim' else None,
                                ddim_eta=0.0 if sampler == 'ddim' else None, guidance_scale=1.0)
  label = f'ddim-{settings.steps}' if sampler == 'ddim' else f'ddpm-{config.diffusion.num_timesteps}'
  rng = np.random.default_rng(batch)
  d_c = factory.condition_dim(config)
  cond = rng.standard_normal((batch, d_c)).astype(np.float32)
  cond[:, :-3] *= 0.03
  cond[:, -3:] = [1.0, 60.0, 70.0]
  key = jax.random.PRNGKey(0)

  start = time.perf_counter()
  sample = generator.compiled_sampler(batch, settings)
  compile_s = time.perf_counter() - start
  first, seconds = environment.first_and_median_seconds(lambda: sample(cond, key),
                                                        jax.block_until_ready, args.repeats)
  ours = np.asarray(sample(cond, key)[0])[:, :, ref.REFERENCE_LEAD_ORDER]
  rows.append(dict(sampler=label, batch=batch, framework='flax', mode='jit',
                   ecgs_per_s=round(batch / seconds, 2), loop_s=round(seconds, 4),
                   compile_s=round(compile_s, 2), first_call_s=round(first, 2)))
  print(json.dumps(rows[-1]), flush=True)

  torch_sampler = TorchSampler(config, device)
  shape = (batch,) + factory.latent_shape(config)
  z_start, noises = start_noise(sampler, key, shape, config.diffusion.num_timesteps)
  if noises is not None and batch > args.max_agreement_batch:
    noises = None  # the per-step noise of a large batch would not fit: timed, not compared
  if noises is not None:
    noises = noises.to(device)
  c = torch.from_numpy(cond).to(device)
  sync = (lambda _: torch.cuda.synchronize()) if device.type == 'cuda' else (lambda _: None)
  for mode in args.torch_modes:
    try:
      run_unet = unet if mode == 'eager' else torch.compile(
          unet, mode=None if mode == 'compile' else mode)
      mark = (torch.compiler.cudagraph_mark_step_begin if mode == 'reduce-overhead'
              and hasattr(torch.compiler, 'cudagraph_mark_step_begin') else lambda: None)

      last = []

      def loop():
        # Timed with our per-step noise where it is compared (drawing it costs the same), so
        # the last timed output is the one compared: no extra loop.
        z = z_start.to(device)
        with torch.inference_mode():
          if sampler == 'ddim':
            z = torch_sampler.ddim(run_unet, z, c, settings.steps, mark)
          else:
            z = torch_sampler.ddpm(run_unet, z, c, mark, noises)
          last[:] = [decoder(z)]
          return last[0]

      first, seconds = environment.first_and_median_seconds(loop, sync, args.repeats)
      row = dict(sampler=label, batch=batch, framework='pytorch_reference', mode=mode,
                 ecgs_per_s=round(batch / seconds, 2), loop_s=round(seconds, 4),
                 first_call_s=round(first, 2), ours_faster=round(seconds / rows[0]['loop_s'], 2))
      if sampler == 'ddim' or noises is not None:
        theirs = last[0].float().cpu().numpy()
        error = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))
        row.update(relative_error=float(f'{error:.3g}'), agrees=error <= AGREEMENT)
    except Exception as error:  # noqa: BLE001  (e.g. torch.compile without a compiler)
      row = dict(sampler=label, batch=batch, framework='pytorch_reference', mode=mode,
                 error=f'{type(error).__name__}: {str(error)[:300]}')
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def to_markdown(report: dict) -> str:
  lines = [f"# {report['benchmark']}", '',
           f"Device: {report['device_kind']} (JAX {report['jax']}, PyTorch {report['torch']} on "
           f"{report['torch_device']}, Python {report['python']}); size {report['size']}.", '',
           f"Command: `{report['command']}`", '',
           '| sampler | batch | framework | mode | ECGs/s | s per loop | compile / first loop s | '
           'ours faster | relative error |', '|---|---|---|---|---|---|---|---|---|']
  for r in report['rows']:
    if 'error' in r:
      lines.append(f"| {r['sampler']} | {r['batch']} | {r['framework']} | {r['mode']} | "
                   f"failed: {r['error'][:80]} | | | | |")
      continue
    first = r.get('compile_s', r['first_call_s'])
    faster = f"{r['ours_faster']}x" if 'ours_faster' in r else ''
    lines.append(f"| {r['sampler']} | {r['batch']} | {r['framework']} | {r['mode']} | "
                 f"{r['ecgs_per_s']} | {r['loop_s']} | {first} | {faster} | "
                 f"{r.get('relative_error', '')} |")
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--batch', type=int, nargs='+', default=[1, 512])
  parser.add_argument('--samplers', nargs='+', default=['ddim', 'ddpm'], choices=['ddim', 'ddpm'])
  parser.add_argument('--ddim_steps', type=int, default=50)
  parser.add_argument('--torch_modes', nargs='+', default=list(MODES), choices=MODES)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--max_agreement_batch', type=int, default=8,
                      help='compare DDPM outputs (same per-step noise) up to this batch')
  parser.add_argument('--size', default='paper', choices=environment.SIZES)
  parser.add_argument('--device', default=None, help='PyTorch device (default: cuda if JAX '
                      'runs on a GPU, else cpu)')
  parser.add_argument('--out', default='benchmarks/results/loops.json')
  args = parser.parse_args()
  device = torch.device(args.device or ('cuda' if jax.default_backend() == 'gpu' else 'cpu'))
  config = environment.benchmark_config(args.size)
  generator, unet, decoder = twin_models(config, device)
  rows = []
  for sampler in args.samplers:
    for batch in args.batch:
      rows += race(batch, sampler, config, generator, unet, decoder, device, args)
  compared = [r['agrees'] for r in rows if 'agrees' in r]
  report = dict(benchmark='whole sampling loops: ours (jit, lax.scan) vs PyTorch (reference '
                          'twin), ECGs per second with the VAE decode',
                **environment.describe(), torch=torch.__version__, torch_device=str(device),
                size=args.size, command=' '.join(['python'] + sys.argv), rows=rows,
                float32_outputs_agree=all(compared) if compared else None)
  environment.write_report(report, args.out)
  markdown = Path(args.out).with_suffix('.md')
  markdown.write_text(to_markdown(report))
  print(markdown.read_text())


if __name__ == '__main__':
  main()
