"""A trained model's conditioning record: what its condition vectors were made with (the text
encoder, model, width and prompt template) and the values standing in for an unknown age and
sex. It is written with the latents and the trained U-Net and CLIP model, and checked before
their embeddings are mixed with any others."""
from diffusets_jax.conditioning import patient, text_encoders


def conditioning_record(config, missing_age: float | None) -> dict:
  """missing_age: the fill for an unknown age (None: none recorded, e.g. a converted model)."""
  return dict(text=text_encoders.identity(config.text), missing_age=missing_age,
              missing_sex=patient.UNKNOWN_SEX_CODE)


def check_record(record: dict, config, where: str) -> None:
  """Raises if `record` (of latents or a trained model) was made with other text settings than
  `config` asks for, prompt template included."""
  text_encoders.check_same_encoder(
      record['text'], text_encoders.identity(config.text), where,
      'Use the text settings it was trained with, or re-run train.py --stage latents.',
      template=True)
