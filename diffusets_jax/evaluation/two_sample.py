"""Classifier two-sample test (C2ST): how often a small classifier, trained on part of two sets
of ECGs, tells the rest apart. 0.5 is chance (the sets are alike to it); 1.0 is every ECG told.

Every ECG is band-passed 0.5-40 Hz and z-scored per lead first, so amplitude and baseline
wander alone cannot decide. The classifier is a 4-layer 1-D CNN; the accuracy is 5-fold
cross-validated (classes balanced in every fold, each fold's model trained from scratch), with
fixed seeds. A test has a floor above 0.5: two halves of the same real records are told apart
a little by chance with few records, so each figure is reported beside the same test on real A
against real B.
"""
import functools

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn
import optax
import scipy.signal

from diffusets_jax import batching
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ
from diffusets_jax.models import layers

BAND_HZ = (0.5, 40.0)
LEAD_II = 1
PREDICT_BATCH = 64


def preprocess(ecg, leads=None) -> np.ndarray:
  """(n, 1024, 12) mV -> (n, 1024, len(leads)) float32: zero-phase band-pass 0.5-40 Hz, then
  each lead of each ECG to mean 0, standard deviation 1 (a flat lead stays 0)."""
  ecg = np.asarray(ecg, np.float64)
  if leads is not None:
    ecg = ecg[:, :, list(leads)]
  sos = scipy.signal.butter(2, BAND_HZ, btype='bandpass', fs=SAMPLE_RATE_HZ, output='sos')
  filtered = scipy.signal.sosfiltfilt(sos, ecg, axis=1)
  centred = filtered - filtered.mean(axis=1, keepdims=True)
  scale = centred.std(axis=1, keepdims=True)
  return np.where(scale > 1e-9, centred / np.maximum(scale, 1e-9), 0.0).astype(np.float32)


class ConvClassifier(nn.Module):
  """Four stride-2 convolutions (kernel 7, 'same' padding), global average pooling, one
  logit. The convolutions take the backend's faster form (layers.conv_form_for)."""
  widths: tuple = (16, 32, 64, 64)

  @nn.compact
  def __call__(self, x):  # (batch, length, leads)
    form = layers.conv_form_for('auto')
    for width in self.widths:
      x = nn.gelu(layers.conv(width, 7, ((3, 3),), stride=2, form=form)(x))
    return nn.Dense(1)(x.mean(axis=1))[:, 0]


@functools.lru_cache(maxsize=None)
def programs(learning_rate: float):
  """(init, step, predict), jitted once: init(key, x) -> (params, optimiser state);
  step(params, state, x, y) -> one Adam step on a batch; predict(params, x) -> logits. (A
  Python loop of steps: XLA's CPU runs this model's gradient ~25x slower inside a while loop.)"""
  model = ConvClassifier()
  optimizer = optax.adam(learning_rate)

  def init(key, x):
    params = model.init(key, x)
    return params, optimizer.init(params)

  def step(params, state, x, y):
    loss = lambda p: optax.sigmoid_binary_cross_entropy(model.apply(p, x), y).mean()
    updates, state = optimizer.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(init), jax.jit(step, donate_argnums=(0, 1)), jax.jit(model.apply)


def train(x, labels, steps: int, batch: int, learning_rate: float, seed: int):
  """A fresh classifier fitted to (x, labels) by `steps` Adam steps on batches drawn at random
  (with a fixed seed)."""
  init, step, _ = programs(learning_rate)
  params, state = init(jax.random.PRNGKey(seed), jnp.asarray(x[:1]))
  draws = np.random.default_rng(seed).integers(0, len(x), (steps, batch))
  for rows in draws:
    params, state = step(params, state, jnp.asarray(x[rows]), jnp.asarray(labels[rows]))
  return params


def folds_of(n: int, folds: int, paired: bool, rng) -> list[np.ndarray]:
  """Test indices (into the 2n ECGs, the first set's n then the second's) of each fold, every
  set split evenly over the folds; `paired` keeps ECG i of both sets in the same fold."""
  first = np.array_split(rng.permutation(n), folds)
  second = first if paired else np.array_split(rng.permutation(n), folds)
  return [np.concatenate([first[k], n + second[k]]) for k in range(folds)]


def accuracy(first, second, folds: int = 5, steps: int = 300, batch: int = 32,
             learning_rate: float = 1e-3, max_per_class: int = 256, seed: int = 0,
             paired: bool = False) -> dict:
  """Cross-validated accuracy of telling `first` from `second` (preprocessed (n, length, leads)
  arrays), each capped at max_per_class and balanced to the smaller: {'accuracy', 'per_class',
  'folds', 'fold_accuracy'}. paired: ECG i of both sets belong together (e.g. a record and its
  reconstruction) and are held out together, so that neither is learnt from the other."""
  rng = np.random.default_rng([seed, len(first), len(second)])
  n = min(len(first), len(second), max_per_class)
  if n < folds:
    raise ValueError(f'a {folds}-fold two-sample test needs at least {folds} ECGs per set, '
                     f'got {len(first)} and {len(second)}')
  if paired and len(first) != len(second):
    raise ValueError(f'paired sets must be of one size, got {len(first)} and {len(second)}')
  chosen = [np.sort(rng.choice(len(x), n, replace=False)) for x in (first, second)]
  if paired:
    chosen[1] = chosen[0]
  x = np.concatenate([np.asarray(first)[chosen[0]], np.asarray(second)[chosen[1]]])
  labels = np.repeat(np.array([0.0, 1.0], np.float32), n)
  predict = programs(learning_rate)[2]
  correct, fold_accuracy = 0, []
  for k, test in enumerate(folds_of(n, folds, paired, rng)):
    kept = np.setdiff1d(np.arange(2 * n), test)
    params = train(x[kept], labels[kept], steps, batch, learning_rate, seed * 1000 + k)
    logits = batching.map_batches(lambda rows: predict(params, jnp.asarray(rows)), x[test],
                                  PREDICT_BATCH)
    right = int(np.sum((logits > 0) == (labels[test] > 0.5)))
    correct += right
    fold_accuracy.append(right / len(test))
  return dict(accuracy=correct / (2 * n), per_class=int(n), folds=folds,
              fold_accuracy=[round(a, 4) for a in fold_accuracy])
