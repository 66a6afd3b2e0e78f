"""The condition vector c = [text embedding, sex, age, heart rate] (reference section 4).

sex is 1.0 for male and 0.0 for female; age (years) and heart rate (bpm) are raw, unnormalised,
as in the released checkpoints.
"""
import numpy as np

AGE_RANGE = (0.0, 120.0)
HEART_RATE_RANGE = (20.0, 300.0)
SEX_CODES = {'M': 1.0, 'F': 0.0}


def validate_patient(age: float, sex: str, heart_rate: float) -> None:
  """Raises ValueError naming the field that is out of range."""
  if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
    raise ValueError(f'age must be {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years, got {age:g}')
  if not HEART_RATE_RANGE[0] <= heart_rate <= HEART_RATE_RANGE[1]:
    raise ValueError(f'heart rate must be {HEART_RATE_RANGE[0]:g}-{HEART_RATE_RANGE[1]:g} bpm, '
                     f'got {heart_rate:g}')
  if sex not in SEX_CODES:
    raise ValueError(f"sex must be 'M' or 'F', got {sex!r}")


def condition_vector(text_embedding, sex, age, heart_rate) -> np.ndarray:
  """(n, d_text), (n,) sex code, (n,) years, (n,) bpm -> (n, d_text + 3) float32."""
  text_embedding = np.asarray(text_embedding, np.float32)
  patient = np.stack([np.asarray(v, np.float32).reshape(-1) for v in (sex, age, heart_rate)], 1)
  if patient.shape[0] != text_embedding.shape[0]:
    raise ValueError(f'{text_embedding.shape[0]} text embeddings but {patient.shape[0]} patients')
  return np.concatenate([text_embedding, patient], axis=1)
