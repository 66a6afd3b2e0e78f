"""Heart rate measured from the signal, vectorised over a batch of ECGs.

Method ("multi-lead energy envelope"):
1. band-pass every lead to 5-20 Hz (2nd-order Butterworth, zero phase), where QRS energy lives
   and P/T waves and baseline wander are weak;
2. sum the squared first differences over the 12 leads and smooth with a 100 ms moving average;
3. a QRS is a sample that is the maximum of its +-180 ms neighbourhood (so at most ~330 bpm) and
   exceeds 35 % of the record's third-largest such maximum (robust to one or two artefacts or
   pacing spikes; a 10 s ECG above 20 bpm has at least three beats); 100 ms at each edge are
   ignored;
4. heart rate = 60 * (number of beats - 1) / (time from first to last beat), i.e. the mean RR.
Records with fewer than two beats get NaN. A second, independent method (wfdb's XQRS on lead II)
is compared against this one in docs/heart_rate.md; `second_detector` runs it on the model's
102.4 Hz signal, and the evaluation reports its rate error and pauses beside this one's.

`longest_rr_ratio` flags pauses: a missing beat (or one too small to detect) makes the mean RR, so
the rate, read low, which a clinician counting the beats on the strip would not do.
"""
import warnings

import numpy as np
import scipy.ndimage
import scipy.signal

from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ


def qrs_envelope(ecg: np.ndarray, fs: float = SAMPLE_RATE_HZ) -> np.ndarray:
  """(batch, length, leads) mV -> (batch, length) smoothed QRS energy."""
  sos = scipy.signal.butter(2, [5.0, min(20.0, 0.45 * fs)], btype='bandpass', fs=fs, output='sos')
  filtered = scipy.signal.sosfiltfilt(sos, ecg, axis=1)
  energy = np.sum(np.diff(filtered, axis=1, prepend=filtered[:, :1]) ** 2, axis=2)
  window = max(1, int(round(0.1 * fs)))
  return scipy.ndimage.uniform_filter1d(energy, window, axis=1)


def detect_beats(ecg: np.ndarray, fs: float = SAMPLE_RATE_HZ) -> np.ndarray:
  """(batch, length, leads) -> boolean (batch, length) mask of detected QRS complexes."""
  envelope = qrs_envelope(ecg, fs)
  neighbourhood = 2 * int(round(0.18 * fs)) + 1
  local_max = envelope == scipy.ndimage.maximum_filter1d(envelope, neighbourhood, axis=1)
  edge = int(round(0.1 * fs))
  local_max[:, :edge] = False
  local_max[:, -edge:] = False
  peak_heights = np.where(local_max, envelope, 0.0)
  third_largest = np.sort(peak_heights, axis=1)[:, -3:-2]
  return local_max & (envelope > 0.35 * third_largest)


def heart_rate(ecg: np.ndarray, fs: float = SAMPLE_RATE_HZ) -> np.ndarray:
  """(batch, length, leads) or (length, leads) mV -> heart rate in bpm, (batch,) or scalar."""
  single = ecg.ndim == 2
  ecg = np.asarray(ecg, np.float64)[None] if single else np.asarray(ecg, np.float64)
  beats = detect_beats(ecg, fs)
  length = beats.shape[1]
  count = beats.sum(axis=1)
  first = np.argmax(beats, axis=1)
  last = length - 1 - np.argmax(beats[:, ::-1], axis=1)
  with np.errstate(divide='ignore', invalid='ignore'):
    rate = np.where(count >= 2, 60.0 * fs * (count - 1) / (last - first), np.nan)
  return rate[0] if single else rate


# A longest RR interval this many times the median one is a pause: a dropped or undetected beat
# (1 % of the bundled PTB-XL test records, docs/pretrained.md).
PAUSE_RATIO = 1.5

# Sinus bradycardia below this rate, sinus tachycardia above the next (bpm).
BRADYCARDIA_BELOW_BPM = 60
TACHYCARDIA_ABOVE_BPM = 100


def rr_intervals(ecg: np.ndarray, fs: float = SAMPLE_RATE_HZ) -> np.ndarray:
  """(batch, length, leads) mV -> (batch, length - 1) RR intervals in samples, in order, padded
  with NaN; a row is all NaN where fewer than three beats are detected (too few for a median)."""
  beats = detect_beats(np.asarray(ecg, np.float64), fs)
  positions = np.sort(np.where(beats, np.arange(beats.shape[1]), np.inf), axis=1)
  with np.errstate(invalid='ignore'):
    rr = np.diff(positions, axis=1)  # beat-to-beat gaps first, then inf or NaN padding
  rr[~np.isfinite(rr)] = np.nan
  rr[beats.sum(axis=1) < 3] = np.nan
  return rr


def longest_rr_ratio(ecg: np.ndarray, fs: float = SAMPLE_RATE_HZ) -> np.ndarray:
  """(batch, length, leads) mV -> (batch,) longest RR interval / median RR interval; NaN where
  fewer than three beats are detected. About 1 for a regular rhythm, 2 for one missing beat."""
  rr = rr_intervals(ecg, fs)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN rows give NaN, as documented
    return np.nanmax(rr, axis=1) / np.nanmedian(rr, axis=1)


def pause_share(ratio: np.ndarray) -> float:
  """Share of the ECGs, among those with a `longest_rr_ratio`, whose ratio exceeds PAUSE_RATIO;
  NaN when none has one."""
  ratio = np.asarray(ratio)
  measured = np.isfinite(ratio)
  return float(np.mean(ratio[measured] > PAUSE_RATIO)) if measured.any() else float('nan')


def xqrs_beats(lead: np.ndarray, fs: float) -> np.ndarray:
  """Sample positions of the beats wfdb's XQRS finds in one lead at `fs` Hz."""
  import wfdb.processing  # only the second detector needs wfdb's signal processing
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # it warns on flat stretches; too few beats is the answer
    return wfdb.processing.xqrs_detect(np.asarray(lead, np.float64), fs=fs, verbose=False)


def xqrs_rate(lead_ii: np.ndarray, fs: float) -> float:
  """A second, independent detector for checking this one: wfdb's XQRS on one lead at its own
  rate `fs` Hz, the mean-RR rate in bpm of its beats (NaN below two)."""
  beats = xqrs_beats(lead_ii, fs)
  if len(beats) < 2:
    return float('nan')
  return 60.0 * fs * (len(beats) - 1) / (beats[-1] - beats[0])


# XQRS's filters and search windows are made for recorded rates (250-500 Hz): on lead II at
# 102.4 Hz it finds a pause in 23.5 % of real PTB-XL ECGs, upsampled 5 times in 2.4 %.
XQRS_UPSAMPLE = 5


def second_detector_beats(lead: np.ndarray, fs: float = SAMPLE_RATE_HZ) -> np.ndarray:
  """Beat positions, in samples at `fs` (fractional), that XQRS finds in one lead upsampled
  XQRS_UPSAMPLE times."""
  upsampled = scipy.signal.resample_poly(np.asarray(lead, np.float64), XQRS_UPSAMPLE, 1)
  return xqrs_beats(upsampled, XQRS_UPSAMPLE * fs) / XQRS_UPSAMPLE


def second_detector(ecg: np.ndarray, fs: float = SAMPLE_RATE_HZ, lead: int = 1):
  """(batch, length, leads) mV -> (rate in bpm, longest RR / median RR), each (batch,), from
  wfdb's XQRS on lead II upsampled XQRS_UPSAMPLE times: an algorithm independent of this
  module's, for reading the rate and the pauses beside it. NaN where it finds under three beats."""
  ecg = np.asarray(ecg, np.float64)
  rates = np.full(len(ecg), np.nan)
  ratios = np.full(len(ecg), np.nan)
  for i, signal in enumerate(ecg[:, :, lead]):
    beats = second_detector_beats(signal, fs)
    if len(beats) >= 3:
      rr = np.diff(beats)
      rates[i] = 60.0 * fs * (len(beats) - 1) / (beats[-1] - beats[0])
      ratios[i] = rr.max() / np.median(rr)
  return rates, ratios


RATE_QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


def rates_by_phrase(reports, heart_rates, phrases, above_bpm: float) -> list[dict]:
  """Per phrase: how many records mention it, quantiles of their rates, how many are above
  `above_bpm`. `reports`: per record, a list of report strings."""
  heart_rates = np.asarray(heart_rates, np.float64)
  rows = []
  for phrase in phrases:
    mask = np.array([any(phrase.lower() in report.lower() for report in record)
                     for record in reports], bool)
    rates = heart_rates[mask & np.isfinite(heart_rates)]
    rows.append(dict(phrase=phrase, records=int(mask.sum()),
                     quantiles_bpm=dict(zip(
                         [f'{q:g}' for q in RATE_QUANTILES],
                         np.quantile(rates, RATE_QUANTILES).round(1).tolist()))
                     if len(rates) else None,
                     above=int((rates > above_bpm).sum())))
  return rows
