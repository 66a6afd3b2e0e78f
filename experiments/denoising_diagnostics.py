r"""Where in the reverse chain generated ECGs lose beats: real ECGs are encoded, noised to a step
t0 and denoised back, and the beats of the decoded ECGs are counted.

  python experiments/denoising_diagnostics.py --split val --num 64 \
      --out docs/pretrained/denoising_diagnostics          # the shipped model
  python experiments/denoising_diagnostics.py --workdir runs/W --split val --out runs/W/denoising

For --num records of the split (0: all; chosen as evaluate.py --num chooses them) and every
guidance scale and start step t0, it measures:
- chain: the sampler's DDPM steps t0 .. 0 from the noised latent, then the decoder;
- one step: the U-Net's single estimate of the clean latent at t0, clipped as the sampler clips
  it, its noise-prediction error (RMS, against the noise that was added: 1.0 is what
  predicting zero scores) and its error against the clean latent (RMS);
- random error: the clean latent plus Gaussian noise of that same RMS, decoded. Beside the one
  step it tells a decoder that loses beats to any latent error of that size from a U-Net whose
  errors are worse than random ones;
and for both, the share of ECGs with a pause (longest RR > 1.5 x median RR, as evaluate.py) and
the heart-rate MAE against the records' own rates, beside the same figures for the VAE alone
(t0 = none) and the real ECGs. A chain that starts from real beats and ends without them shows
the denoiser, not the rhythm it was asked for, losing the beats.

Writes denoising_diagnostics.json and denoising_diagnostics.png to --out.
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
from tqdm import tqdm  # noqa: E402

from diffusets_jax.datasets import heart_rate as hr_detector  # noqa: E402
from diffusets_jax.diffusion import samplers  # noqa: E402
from diffusets_jax.diffusion.schedule import add_noise  # noqa: E402
from diffusets_jax.evaluation.evaluator import chosen_records, heart_rate_error  # noqa: E402
from diffusets_jax.generate import Generator  # noqa: E402
from diffusets_jax.io import plots  # noqa: E402
from diffusets_jax.models import factory  # noqa: E402


def beat_figures(ecg, requested) -> dict:
  """Pause share and heart-rate MAE (against the requested rates; None when no rate is measured)
  of decoded ECGs."""
  mae, unmeasured = heart_rate_error(hr_detector.heart_rate(np.asarray(ecg, np.float64)),
                                     requested)
  return dict(pauses=round(hr_detector.pause_share(hr_detector.longest_rr_ratio(ecg)), 3),
              heart_rate_mae_bpm=round(mae, 2) if np.isfinite(mae) else None,
              measured=round(1.0 - unmeasured / len(requested), 3))


def diagnose(generator: Generator, real_ecg, cond, requested, starts, scales, seed: int,
             show_progress: bool = True) -> dict:
  """The figures for every (guidance scale, start step); see the module docstring."""
  schedule = generator.schedule
  _, unet_variables = generator.params()
  clip = generator.config.sampling.clip
  n = len(real_ecg)
  shape = (n,) + factory.latent_shape(generator.config)
  z0 = jnp.asarray(generator.encode(real_ecg))
  decode = generator.decode
  cond = jnp.asarray(cond, jnp.float32)
  result = dict(records=n, real=beat_figures(real_ecg, requested),
                vae_only=beat_figures(np.asarray(decode(z0)), requested), runs=[])

  for scale in scales:
    predict = generator.noise_predictor(unet_variables, True, scale)

    @jax.jit
    def one_step(z_t, t0):
      eps_hat = predict(z_t, jnp.full((n,), t0), cond)
      return eps_hat, samplers.predict_x0(schedule, z_t, eps_hat, t0, clip)

    chain = jax.jit(lambda z_t, t0, key: samplers.ddpm_denoise(predict, schedule, cond, z_t, t0,
                                                               key, clip), static_argnums=1)
    for t0 in tqdm(starts, desc=f'guidance {scale:g}', disable=not show_progress, leave=False):
      noise_key, chain_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), t0))
      noise = jax.random.normal(noise_key, shape)
      z_t = add_noise(schedule, z0, noise, jnp.full((n,), t0))
      eps_hat, z0_hat = one_step(z_t, t0)
      eps_error = float(jnp.sqrt(jnp.mean((eps_hat - noise) ** 2)))
      latent_error = float(jnp.sqrt(jnp.mean((z0_hat - z0) ** 2)))
      random_noise = jax.random.normal(jax.random.fold_in(noise_key, 1), shape)
      z0_random = z0 + latent_error * random_noise / jnp.sqrt(jnp.mean(random_noise ** 2))
      result['runs'].append(dict(
          guidance_scale=scale, start_step=t0,
          noise_std=round(float(jnp.sqrt(1.0 - schedule.alphas_cumprod[t0])), 4),
          one_step=dict(noise_prediction_rms_error=round(eps_error, 3),
                        clean_latent_rms_error=round(latent_error, 4),
                        **beat_figures(np.asarray(decode(z0_hat)), requested)),
          random_error=beat_figures(np.asarray(decode(z0_random)), requested),
          chain=beat_figures(np.asarray(decode(chain(z_t, t0, chain_key))), requested)))
  return result


def plot(result: dict, path: Path) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, key, label in ((axes[0], 'pauses', 'ECGs with a pause'),
                         (axes[1], 'heart_rate_mae_bpm', 'heart-rate MAE (bpm)')):
    for scale in sorted({run['guidance_scale'] for run in result['runs']}):
      runs = [run for run in result['runs'] if run['guidance_scale'] == scale]
      steps = [run['start_step'] for run in runs]
      ax.plot(steps, [run['chain'][key] for run in runs], 'o-', label=f'chain, guidance {scale:g}')
      ax.plot(steps, [run['one_step'][key] for run in runs], 's--',
              label=f'one step, guidance {scale:g}')
      ax.plot(steps, [run['random_error'][key] for run in runs], 'x:',
              label=f'random latent error of the one step\'s size, guidance {scale:g}')
    ax.axhline(result['vae_only'][key], color='grey', lw=1, label='VAE alone')
    if key == 'pauses':
      ax.axhline(result['real'][key], color='black', lw=1, label='real ECGs')
    if min(run['start_step'] for run in result['runs']) > 0:
      ax.set_xscale('log')  # start steps span decades
    ax.set_xlabel('start step t0 (real latent noised to t0, then denoised)')
    ax.set_ylabel(label)
  axes[0].legend(fontsize=7)
  fig.suptitle(f'Denoising real ECG latents: {result["records"]} records', fontsize=10)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', default=None,
                      help='trained workdir (default: the shipped pretrained model)')
  parser.add_argument('--split', default='val', help='data split of the real ECGs (default val)')
  parser.add_argument('--num', type=int, default=64,
                      help='records, a seeded choice as in evaluate.py (0: all; default 64)')
  parser.add_argument('--starts', type=int, nargs='+', default=[10, 30, 100, 200, 400],
                      help='start steps t0 (default 10 30 100 200 400)')
  parser.add_argument('--guidance_scales', type=float, nargs='+', default=None,
                      help="guidance scales (default: 1 and the model's own)")
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', required=True, help='output folder')
  args = parser.parse_args()

  generator = Generator.open(args.workdir or 'pretrained')
  last = generator.schedule.num_timesteps - 1
  if not args.starts or min(args.starts) < 0 or max(args.starts) > last:
    parser.error(f'--starts must lie in 0..{last}, got {args.starts}')
  scales = args.guidance_scales or sorted({1.0, generator.settings().guidance_scale})
  for scale in scales:  # refuses guidance for a model trained without a null condition
    generator.settings(guidance_scale=scale)
  real_ecg, cond, requested = chosen_records(generator, args.split, args.num, args.seed)
  result = diagnose(generator, real_ecg, cond, requested, sorted(args.starts), scales, args.seed)
  result.update(workdir=args.workdir or 'pretrained', split=args.split, seed=args.seed)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'denoising_diagnostics.json').write_text(json.dumps(result, indent=1))
  plot(result, out / 'denoising_diagnostics.png')
  print(json.dumps({k: result[k] for k in ('real', 'vae_only')}))
  for run in result['runs']:
    print(run['guidance_scale'], run['start_step'], 'chain', run['chain'], 'one step',
          run['one_step'], 'random error', run['random_error'])


if __name__ == '__main__':
  main()
