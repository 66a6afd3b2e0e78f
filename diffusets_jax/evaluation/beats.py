"""Why generated ECGs read slow: the heart-rate error by requested rate, with the mean-RR rate
(evaluate.py's) beside the median-RR rate (which a single dropped beat barely moves), and the
share of ECGs with a pause, also as an independent detector (wfdb's XQRS on lead II) reads them.
scripts/beat_diagnostics.py runs it on an evaluation's output."""
import warnings

import numpy as np

from diffusets_jax.datasets import heart_rate as hr_detector
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ

RATE_BANDS = ((0, 60), (60, 80), (80, 100), (100, 400))


def median_rr_rate(ecg: np.ndarray) -> np.ndarray:
  """(batch, length, leads) -> (batch,) 60 / median RR in bpm; NaN below three beats."""
  rr = hr_detector.rr_intervals(ecg)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN rows give NaN
    return 60.0 * SAMPLE_RATE_HZ / np.nanmedian(rr, axis=1)


def error_row(measured, requested) -> dict:
  error = measured - requested
  return dict(mae_bpm=round(float(np.nanmean(np.abs(error))), 2),
              bias_bpm=round(float(np.nanmean(error)), 2))


def diagnose(generated, real, requested) -> dict:
  """generated, real (n, 1024, 12) mV; requested (n,) bpm -> the figures, overall and per band
  of requested rate (empty bands left out)."""
  mean_rr = hr_detector.heart_rate(np.asarray(generated, np.float64))
  median_rr = median_rr_rate(generated)
  ratio_generated = hr_detector.longest_rr_ratio(generated)
  ratio_real = hr_detector.longest_rr_ratio(real)
  share = lambda ratio: round(hr_detector.pause_share(ratio), 3)
  xqrs_generated, xqrs_ratio_generated = hr_detector.second_detector(generated)
  xqrs_real, xqrs_ratio_real = hr_detector.second_detector(real)
  # Pauses both detectors see: a beat missing from the signal rather than one detector's miss.
  both = np.where(np.isfinite(ratio_generated) & np.isfinite(xqrs_ratio_generated),
                  np.minimum(ratio_generated, xqrs_ratio_generated), np.nan)
  bands = []
  for low, high in RATE_BANDS:
    band = (requested >= low) & (requested < high)
    if band.any():
      bands.append(dict(requested_bpm=f'{low}-{high}', records=int(band.sum()),
                        mean_rr=error_row(mean_rr[band], requested[band]),
                        median_rr=error_row(median_rr[band], requested[band]),
                        pauses=share(ratio_generated[band])))
  return dict(records=int(len(requested)), pause_ratio=hr_detector.PAUSE_RATIO,
              pauses=dict(generated=share(ratio_generated), real=share(ratio_real)),
              all=dict(mean_rr=error_row(mean_rr, requested),
                       median_rr=error_row(median_rr, requested)),
              by_requested_rate=bands,
              second_detector=dict(
                  method=f"wfdb's XQRS on lead II, upsampled {hr_detector.XQRS_UPSAMPLE} times",
                  pauses=dict(generated=share(xqrs_ratio_generated), real=share(xqrs_ratio_real)),
                  pauses_both_detectors=share(both),
                  mean_rr=dict(generated=error_row(xqrs_generated, requested),
                               real=error_row(xqrs_real, requested))))
