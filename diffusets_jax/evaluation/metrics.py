"""The metrics of the evaluation protocol (spec section 6), as pure numpy functions.

Features are the CLIP model's 64-d ECG (and text) features; ECGs are (n, 1024, 12) mV in the
standard lead order. Everything is vectorised over records and computed in float64.
"""
import numpy as np

from diffusets_jax.datasets.preprocessing import STANDARD_LEADS


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean (d,) and unbiased covariance (d, d) of (n, d) features."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f'need at least 2 feature vectors of shape (n, d), got {features.shape}')
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix):
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
  """Squared Frechet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b):
  |mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a^1/2 cov_b cov_a^1/2)^1/2).

  The symmetric form needs only symmetric eigendecompositions, so it stays real and stable for
  the singular covariances of small sets (n <= d).
  """
  root_a = _psd_sqrt(np.asarray(cov_a, np.float64))
  cross = np.linalg.eigvalsh(root_a @ np.asarray(cov_b, np.float64) @ root_a)
  trace_sqrt = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
  diff = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
  return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def fid(features_a, features_b) -> float:
  """Frechet distance between the Gaussians fitted to two (n, d) feature sets."""
  return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def _pairwise_distances(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
  return np.sqrt(np.clip(squared, 0.0, None))


def manifold_radii(features, k: int) -> np.ndarray:
  """Distance from each point to its k-th nearest other point of the same set, (n,)."""
  if len(features) <= k:
    raise ValueError(f'k={k} nearest neighbours need more than {k} points, got {len(features)}')
  distances = _pairwise_distances(features, features)
  return np.partition(distances, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def coverage(points, manifold, k: int) -> float:
  """Fraction of `points` inside the k-NN manifold of `manifold`: within the radius of at least
  one of its points (Kynkaanniemi et al. 2019)."""
  radii = manifold_radii(manifold, k)
  inside = _pairwise_distances(points, manifold) <= radii[None, :]
  return float(np.mean(np.any(inside, axis=1)))


def precision_recall(real, generated, k: int = 3) -> tuple[float, float]:
  """Precision: generated points on the real manifold; recall: real points on the generated
  manifold (k-NN manifolds, Kynkaanniemi et al. 2019)."""
  return coverage(generated, real, k), coverage(real, generated, k)


def cosine_similarity(a, b) -> np.ndarray:
  """Row-wise cosine of two (n, d) sets, (n,)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def clip_score(ecg_features, text_features) -> float:
  """Mean cosine between each ECG's feature and its own text's feature, in [-1, 1]."""
  return float(np.mean(cosine_similarity(ecg_features, text_features)))


def signal_mae(ecg_a, ecg_b) -> np.ndarray:
  """Mean absolute difference of paired ECGs over samples and leads, (n,) mV."""
  return np.mean(np.abs(np.asarray(ecg_a, np.float64) - np.asarray(ecg_b, np.float64)),
                 axis=(1, 2))


_LEAD = {name: i for i, name in enumerate(STANDARD_LEADS)}

# Each derived limb lead as a function of I and II (Einthoven's law and Goldberger's leads).
LEAD_RELATIONS = {
    'III = II - I': ('III', lambda i, ii: ii - i),
    'aVR = -(I + II) / 2': ('aVR', lambda i, ii: -(i + ii) / 2),
    'aVL = I - II / 2': ('aVL', lambda i, ii: i - ii / 2),
    'aVF = II - I / 2': ('aVF', lambda i, ii: ii - i / 2),
}


def lead_residuals(ecg) -> dict[str, dict[str, np.ndarray]]:
  """Per relation, the RMS residual over time of each ECG in mV, (n,), and that residual relative
  to the ECG's RMS limb-lead amplitude (I, II, III, aVR, aVL, aVF), (n,)."""
  ecg = np.asarray(ecg, np.float64)
  i, ii = ecg[..., _LEAD['I']], ecg[..., _LEAD['II']]
  limb = ecg[..., [_LEAD[name] for name in ('I', 'II', 'III', 'aVR', 'aVL', 'aVF')]]
  amplitude = np.sqrt(np.mean(limb ** 2, axis=(1, 2)))
  out = {}
  for relation, (lead, derive) in LEAD_RELATIONS.items():
    rms = np.sqrt(np.mean((ecg[..., _LEAD[lead]] - derive(i, ii)) ** 2, axis=1))
    with np.errstate(divide='ignore', invalid='ignore'):
      out[relation] = dict(rms_mv=rms, relative=rms / amplitude)
  return out


# Frequency bands for splitting a reconstruction error: baseline wander (and offset), the bulk
# of P, QRS and T energy, and the sharp edges of QRS complexes and noise.
FREQUENCY_BANDS_HZ = ((0.0, 0.7), (0.7, 15.0), (15.0, np.inf))


def band_mean_squares(signal, sample_rate_hz: float,
                      bands=FREQUENCY_BANDS_HZ) -> list[float]:
  """Mean square of `signal` (n, length, leads) in each [low, high) frequency band, over every
  value. By Parseval the bands' mean squares add up to the whole signal's when the bands cover
  0 to the Nyquist frequency."""
  signal = np.asarray(signal, np.float64)
  length = signal.shape[1]
  spectrum = np.abs(np.fft.rfft(signal, axis=1)) ** 2
  freqs = np.fft.rfftfreq(length, 1.0 / sample_rate_hz)
  # rfft keeps one side: every bin but DC (and Nyquist, for even lengths) stands for two.
  weight = np.full(freqs.shape, 2.0)
  weight[0] = 1.0
  if length % 2 == 0:
    weight[-1] = 1.0
  power = np.einsum('nfl,f->f', spectrum, weight) / (length ** 2 * signal.shape[0] * signal.shape[2])
  return [float(power[(freqs >= low) & (freqs < high)].sum()) for low, high in bands]
