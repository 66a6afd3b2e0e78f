"""Prompts, the hashing text encoder and the patient part of the condition vector."""
import numpy as np
import pytest

from configs import default
from diffusets_jax.conditioning import patient, prompts, text_encoders

TEMPLATE = default.get_config().text.template


def test_single_report_prompt():
  assert prompts.build_prompt(['Sinus bradycardia.'], TEMPLATE) == (
      'The report of the ECG is that Sinus bradycardia.')


def test_ordered_reports_prompt():
  got = prompts.build_prompt(['Sinus rhythm', 'Left axis deviation', 'LVH'], TEMPLATE)
  assert got == ('Most importantly, the 1st diagnosis is Sinus rhythm. '
                 'As a supplementary condition, the 2nd diagnosis is Left axis deviation. '
                 'As a supplementary condition, the 3rd diagnosis is LVH.')
  code_template = dict(TEMPLATE, separator='')  # the authors' code joins without a space
  assert '.As a supplementary' in prompts.build_prompt(['a', 'b'], code_template)


def test_ordinals():
  assert [prompts.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
      '1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '101st']


def test_empty_report_is_rejected():
  with pytest.raises(ValueError, match='non-empty'):
    prompts.build_prompt(['Sinus rhythm', '  '], TEMPLATE)
  with pytest.raises(ValueError, match='non-empty'):
    prompts.build_prompt([], TEMPLATE)


def test_hashing_encoder_is_deterministic_unit_norm_and_word_sensitive():
  encoder = text_encoders.HashingEncoder(64)
  a, b, c = encoder.encode(['sinus bradycardia', 'Sinus Bradycardia!', 'atrial fibrillation'])
  np.testing.assert_allclose(np.linalg.norm(a), 1.0, rtol=1e-6)
  np.testing.assert_allclose(a, b)  # case and punctuation do not matter
  assert float(a @ c) < 0.9
  np.testing.assert_array_equal(encoder.encode(['sinus bradycardia'])[0],
                                text_encoders.HashingEncoder(64).encode(['sinus bradycardia'])[0])


def test_unknown_encoder_is_named():
  config = default.get_config()
  config.text.encoder = 'bert-huge'
  with pytest.raises(ValueError, match="unknown text encoder 'bert-huge'"):
    text_encoders.make_text_encoder(config.text)


@pytest.mark.parametrize('age, sex, hr, message', [
    (-3, 'F', 60, 'age must be 0-120 years, got -3'),
    (130, 'F', 60, 'age must be'),
    (50, 'F', 10, 'heart rate must be 20-300 bpm, got 10'),
    (50, 'F', 400, 'heart rate must be'),
    (50, 'X', 60, "sex must be 'M', 'F' or unknown"),
])
def test_patient_validation(age, sex, hr, message):
  with pytest.raises(ValueError, match=message):
    patient.validate_patient(age, sex, hr)


def test_condition_vector_order_and_raw_values():
  c = patient.condition_vector(np.ones((2, 4)), [1.0, 0.0], [63, 20], [55, 120])
  np.testing.assert_array_equal(c[0], [1, 1, 1, 1, 1.0, 63, 55])
  np.testing.assert_array_equal(c[1, 4:], [0.0, 20, 120])
