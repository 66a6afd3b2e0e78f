"""The diffusion loss on held-out latents during training: what shows overfitting.

A small training set is fitted ever more closely while the U-Net's loss on held-out records
rises; the training loss alone cannot show it. Every evaluation uses the same draws of (t, noise)
per record, so the curve moves only with the weights. It scores the sampling weights (EMA where
there are some), the full condition (no null condition) and no dropout. It is the error of the
noise prediction whatever the U-Net predicts (`diffusion.prediction`), so curves compare across
predictions; with 'v' the training loss beside it is in v's units.
"""
import numpy as np
import jax

from diffusets_jax import batching
from diffusets_jax.training.losses import noise_prediction_error

# Timestep bands reported beside the whole range: the low-noise end, the middle and the
# high-noise half, where a sample's fine detail, beats and coarse layout are drawn.
BANDS = ((1, 100), (100, 400), (400, 999))


def fixed_draws(num_records: int, latent_shape, draws: int, seed: int):
  """(t (num_records * draws,), noise (num_records * draws, *latent_shape)): t ~ U{1..998} as in
  training, the same for every evaluation."""
  t_key, noise_key = jax.random.split(jax.random.PRNGKey(seed))
  n = num_records * draws
  return (np.asarray(jax.random.randint(t_key, (n,), 1, 999)),
          np.asarray(jax.random.normal(noise_key, (n,) + tuple(latent_shape))))


def make_loss_fn(unet, schedule, latent, cond, draws: int = 4, seed: int = 0,
                 batch_size: int = 64, prediction: str = 'eps'):
  """fn(params) -> {'loss', 'loss_t1-99', ...}: the noise-prediction loss (sum of squared error
  over the latent, mean over records and draws, as the training loss) of `latent` (n, length,
  channels) under `cond` (n, d_c), with `draws` fixed (t, noise) draws per record."""
  latent = np.repeat(np.asarray(latent, np.float32), draws, axis=0)
  cond = np.repeat(np.asarray(cond, np.float32), draws, axis=0)
  t, noise = fixed_draws(len(latent) // draws, latent.shape[1:], draws, seed)

  per_example = jax.jit(lambda params, z0, c, t, noise: noise_prediction_error(
      unet, params, schedule, z0, c, t, noise, prediction))

  def loss_fn(params) -> dict:
    losses = batching.map_batches(lambda *rows: per_example(params, *rows),
                                  (latent, cond, t, noise), batch_size)
    out = {'loss': float(losses.mean())}
    for lo, hi in BANDS:
      in_band = (t >= lo) & (t < hi)
      out[f'loss_t{lo}-{hi - 1}'] = float(losses[in_band].mean()) if in_band.any() else None
    return out

  return loss_fn


def make_evaluator(unet, schedule, heldout: dict, train: dict, seed: int, batch_size: int,
                   prediction: str = 'eps'):
  """fn(state) -> one log row: the held-out loss of the sampling weights on `heldout`, and the
  same on as many training records (the first ones) with the same draws, for the gap. `heldout`
  and `train` hold 'latent' and 'cond'."""
  n = len(heldout['latent'])
  on_heldout = make_loss_fn(unet, schedule, heldout['latent'], heldout['cond'], seed=seed,
                            batch_size=batch_size, prediction=prediction)
  on_train = make_loss_fn(unet, schedule, train['latent'][:n], train['cond'][:n], seed=seed,
                          batch_size=batch_size, prediction=prediction)

  def evaluate(state) -> dict:
    params = state.ema_params if getattr(state, 'ema_params', None) is not None else state.params
    row = {f'heldout_{k}': v for k, v in on_heldout(params).items()}
    row.update({f'train_{k}': v for k, v in on_train(params).items()})
    row['records'] = n
    row['prediction'] = prediction  # the curves' loss is in its units; these are noise errors
    return row

  return evaluate
