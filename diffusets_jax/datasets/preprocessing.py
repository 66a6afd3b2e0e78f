"""Signal preprocessing of the reference: NaN -> 0, FFT resampling to 1024 samples, mV kept."""
import numpy as np
import scipy.signal

STANDARD_LEADS = ('I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6')
NUM_SAMPLES = 1024
DURATION_S = 10.0
SAMPLE_RATE_HZ = NUM_SAMPLES / DURATION_S  # 102.4 Hz


def replace_nans(signal: np.ndarray) -> tuple[np.ndarray, int]:
  """Returns the signal with NaN samples set to 0 (as the reference does) and how many there were."""
  nan_mask = np.isnan(signal)
  count = int(nan_mask.sum())
  return (np.where(nan_mask, 0.0, signal) if count else signal), count


def resample(signal: np.ndarray, num_samples: int = NUM_SAMPLES, axis: int = 0) -> np.ndarray:
  """FFT resampling (`scipy.signal.resample`) along the time axis, float32 out."""
  return scipy.signal.resample(signal, num_samples, axis=axis).astype(np.float32)


def standard_lead_order(lead_names) -> list[int]:
  """Column indices that put `lead_names` (any case, e.g. 'i', 'avl') in standard order.

  Raises ValueError listing the leads that are missing.
  """
  lookup = {name.strip().lower(): i for i, name in enumerate(lead_names)}
  missing = [lead for lead in STANDARD_LEADS if lead.lower() not in lookup]
  if missing:
    raise ValueError(f'missing leads {missing}; found {list(lead_names)}')
  return [lookup[lead.lower()] for lead in STANDARD_LEADS]
