r"""Exposure bias of a sampler: the U-Net's predicted noise along the sampling chain against the
same on noised real latents, step by step.

  python experiments/exposure_bias.py --split val --num 32 --out docs/pretrained/exposure_bias
  python experiments/exposure_bias.py --workdir runs/W --split val --out runs/W/exposure_bias

A U-Net is trained on z_t made from real latents; during sampling it sees z_t made by its own
earlier steps. Where the two differ (exposure bias, Ning et al. 2023), its noise prediction
grows larger than in training. For --num records of the split (chosen as evaluate.py chooses
them), with the model's guidance scale and the DDPM sampler, at every step t it writes:
- sampled: the RMS of the (guided) predicted noise along the chain from pure noise, and the
  RMS of z_t itself;
- real: the same RMS on the records' real latents noised to t with fresh noise (every
  --real_every-th step), and that z_t's RMS;
- their ratio. Above 1: the chain's inputs look noisier to the U-Net than real ones do.

Writes exposure_bias.json and exposure_bias.png to --out.
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from diffusets_jax.diffusion import samplers  # noqa: E402
from diffusets_jax.diffusion.schedule import add_noise  # noqa: E402
from diffusets_jax.evaluation.evaluator import chosen_records  # noqa: E402
from diffusets_jax.generate import Generator  # noqa: E402
from diffusets_jax.io import plots  # noqa: E402
from diffusets_jax.models import factory  # noqa: E402

rms = lambda x: jnp.sqrt(jnp.mean(x ** 2))


def measure(generator: Generator, real_ecg, cond, scale: float, real_every: int, seed: int):
  """(steps t = T-1..0, sampled eps RMS, sampled z_t RMS, real t's, real eps RMS, real z_t RMS)."""
  _, unet_variables = generator.params()
  schedule = generator.schedule
  n = len(real_ecg)
  shape = (n,) + factory.latent_shape(generator.config)
  cond = jnp.asarray(cond, jnp.float32)
  predict = generator.noise_predictor(unet_variables, scale != 1.0, scale)
  key = jax.random.PRNGKey(seed)
  last = schedule.num_timesteps - 1

  @jax.jit
  def chain(key):  # the DDPM sampler, recording what the U-Net sees and says at every step
    init_key, step_key = jax.random.split(key)
    z_T = jax.random.normal(init_key, shape)
    return samplers.ddpm_denoise(predict, schedule, cond, z_T, last, step_key,
                                 generator.config.sampling.clip,
                                 trace=lambda z_t, eps_hat: (rms(eps_hat), rms(z_t)))[1]

  sampled_eps, sampled_z = chain(jax.random.fold_in(key, 0))
  z0 = jnp.asarray(generator.encode(real_ecg))

  @jax.jit
  def on_real(t, noise_key):
    z_t = add_noise(schedule, z0, jax.random.normal(noise_key, shape), jnp.full((n,), t))
    return rms(predict(z_t, jnp.full((n,), t), cond)), rms(z_t)

  real_steps = np.arange(0, schedule.num_timesteps, real_every)
  real = [on_real(int(t), jax.random.fold_in(key, 1000 + int(t))) for t in real_steps]
  return (np.arange(last, -1, -1), np.asarray(sampled_eps), np.asarray(sampled_z), real_steps,
          np.asarray([float(e) for e, _ in real]), np.asarray([float(z) for _, z in real]))


def plot(result: dict, path: Path) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  sampled = {t: (e, z) for t, e, z in zip(result['steps'], result['sampled_eps_rms'],
                                          result['sampled_z_rms'])}
  real_t = result['real_steps']
  axes[0].plot(result['steps'], result['sampled_eps_rms'], lw=1, label='along the sampling chain')
  axes[0].plot(real_t, result['real_eps_rms'], 'o', ms=3, label='on noised real latents')
  axes[0].set_ylabel('RMS of the predicted noise')
  axes[1].plot(real_t, [sampled[t][0] / e for t, e in zip(real_t, result['real_eps_rms'])],
               label='predicted noise')
  axes[1].plot(real_t, [sampled[t][1] / z for t, z in zip(real_t, result['real_z_rms'])],
               label='z_t')
  axes[1].axhline(1.0, color='grey', lw=1)
  axes[1].set_ylabel('RMS: sampling chain / noised real')
  for ax in axes:
    ax.set_xlabel('step t')
    ax.legend(fontsize=8)
  fig.suptitle(f'Exposure bias: {result["records"]} records, guidance '
               f'{result["guidance_scale"]:g}', fontsize=10)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', default=None,
                      help='trained workdir (default: the shipped pretrained model)')
  parser.add_argument('--split', default='val')
  parser.add_argument('--num', type=int, default=32, help='records (default 32)')
  parser.add_argument('--guidance_scale', type=float, default=None,
                      help="default: the model's sampling.guidance_scale")
  parser.add_argument('--real_every', type=int, default=10,
                      help='measure the noised real latents every this many steps (default 10)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', required=True, help='output folder')
  args = parser.parse_args()
  if args.num < 1 or args.real_every < 1:
    parser.error('--num and --real_every must be at least 1')
  generator = Generator.open(args.workdir or 'pretrained')
  scale = generator.settings(guidance_scale=args.guidance_scale).guidance_scale
  real_ecg, cond, _ = chosen_records(generator, args.split, args.num, args.seed)
  steps, sampled_eps, sampled_z, real_steps, real_eps, real_z = measure(
      generator, real_ecg, cond, scale, args.real_every, args.seed)
  result = dict(workdir=args.workdir or 'pretrained', split=args.split, records=len(real_ecg),
                guidance_scale=scale, seed=args.seed, steps=steps.tolist(),
                sampled_eps_rms=sampled_eps.round(5).tolist(),
                sampled_z_rms=sampled_z.round(5).tolist(), real_steps=real_steps.tolist(),
                real_eps_rms=real_eps.round(5).tolist(), real_z_rms=real_z.round(5).tolist())
  by_step = dict(zip(steps.tolist(), sampled_eps.tolist()))
  ratio = np.asarray([by_step[t] / e for t, e in zip(real_steps.tolist(), real_eps)])
  bands = {'t < 100': real_steps < 100, 't 100-399': (real_steps >= 100) & (real_steps < 400),
           't >= 400': real_steps >= 400}
  result['eps_rms_ratio_by_band'] = {name: round(float(ratio[mask].mean()), 4)
                                     for name, mask in bands.items()}
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'exposure_bias.json').write_text(json.dumps(result, indent=1))
  plot(result, out / 'exposure_bias.png')
  print(json.dumps(result['eps_rms_ratio_by_band']))
  print(f'wrote {out / "exposure_bias.json"}, {out / "exposure_bias.png"}')


if __name__ == '__main__':
  main()
