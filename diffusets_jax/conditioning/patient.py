"""The patient part of the condition vector c = [text embedding, sex, age, heart rate].

As the reference (section 4): sex is 1.0 for male and 0.0 for female; age (years) and heart rate
(bpm) are raw, unnormalised, so that the released checkpoints read them as they were trained.

Missing values (a dataset record with unknown sex or age, or a sampling request without them):
- unknown sex -> 0.5, halfway between the two codes, so it claims neither;
- unknown age -> the median known age of the training split, recorded with the trained model
  (`missing_age` in its conditioning record) so that sampling fills it the same way.
The number of records filled is reported when the latents are made. Heart rate is never missing:
it is measured from every signal.
"""
import numpy as np

import jax.numpy as jnp

AGE_RANGE = (0.0, 120.0)
HEART_RATE_RANGE = (20.0, 300.0)
SEX_CODES = {'M': 1.0, 'F': 0.0}
UNKNOWN_SEX_CODE = 0.5


# Option unet.normalize_patient: (value - centre) / scale for sex code, age, heart rate. Fixed
# numbers (not training-set statistics), so a model never depends on the data it saw.
NORMALIZATION_CENTRE = (0.5, 50.0, 70.0)   # sex code, years, bpm
NORMALIZATION_SCALE = (0.5, 20.0, 20.0)


def normalize(cond):
  """Condition vectors (..., d_text + 3) with their sex, age and heart rate entries mapped to
  about unit range (sex -1/0/1 for F/unknown/M, (age - 50) / 20, (heart rate - 70) / 20)."""
  centre = jnp.asarray(NORMALIZATION_CENTRE, cond.dtype)
  scale = jnp.asarray(NORMALIZATION_SCALE, cond.dtype)
  return jnp.concatenate([cond[..., :-3], (cond[..., -3:] - centre) / scale], axis=-1)


def validate_patient(age: float | None, sex: str | None, heart_rate: float) -> None:
  """Raises ValueError naming the field that is out of range; None means unknown."""
  if age is not None and not (np.isfinite(age) and AGE_RANGE[0] <= age <= AGE_RANGE[1]):
    raise ValueError(f'age must be {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years, got {age:g}')
  if not (np.isfinite(heart_rate) and HEART_RATE_RANGE[0] <= heart_rate <= HEART_RATE_RANGE[1]):
    raise ValueError(f'heart rate must be {HEART_RATE_RANGE[0]:g}-{HEART_RATE_RANGE[1]:g} bpm, '
                     f'got {heart_rate:g}')
  if sex is not None and sex not in SEX_CODES:
    raise ValueError(f"sex must be 'M', 'F' or unknown (None), got {sex!r}")


def sex_codes(sexes) -> np.ndarray:
  """'M' / 'F' / anything else (unknown) -> 1.0 / 0.0 / 0.5, float32."""
  return np.array([SEX_CODES.get(s, UNKNOWN_SEX_CODE) for s in sexes], np.float32)


def missing_age_fill(train_ages) -> float:
  """The age that stands in for an unknown one: the median known training age, in years."""
  known = np.asarray(train_ages, np.float64)
  known = known[np.isfinite(known)]
  if not len(known):
    raise ValueError('no training record has a known age, so unknown ages cannot be filled')
  return float(np.median(known))


def fill_ages(ages, fill: float) -> np.ndarray:
  ages = np.asarray(ages, np.float32)
  return np.where(np.isfinite(ages), ages, np.float32(fill))


def condition_vector(text_embedding, sex, age, heart_rate) -> np.ndarray:
  """(n, d_text), (n,) sex code, (n,) years, (n,) bpm -> (n, d_text + 3) float32."""
  text_embedding = np.asarray(text_embedding, np.float32)
  patient = np.stack([np.asarray(v, np.float32).reshape(-1) for v in (sex, age, heart_rate)], 1)
  if patient.shape[0] != text_embedding.shape[0]:
    raise ValueError(f'{text_embedding.shape[0]} text embeddings but {patient.shape[0]} patients')
  if not np.all(np.isfinite(patient)):
    raise ValueError('sex, age and heart rate must be finite; fill unknown values first '
                     '(patient.sex_codes, patient.fill_ages)')
  return np.concatenate([text_embedding, patient], axis=1)
