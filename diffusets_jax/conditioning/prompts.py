"""Clinical reports -> the prompt sentence that is embedded (paper section 3.2).

One report: "The report of the ECG is that {text}."
Several, in order: "Most importantly, the 1st diagnosis is {A}." then
"As a supplementary condition, the 2nd diagnosis is {B}." and so on. The authors' code joins the
sentences with no separator; the paper (and our default) with a space. Embeddings depend on every
character, so the template is part of a trained model's config.
"""
from typing import Sequence

import ml_collections
import numpy as np

PAPER_TEMPLATE = dict(
    single='The report of the ECG is that {text}.',
    first='Most importantly, the 1st diagnosis is {text}.',
    further='As a supplementary condition, the {ordinal} diagnosis is {text}.',
    separator=' ',
)


def ordinal(n: int) -> str:
  if 10 <= n % 100 <= 20:
    return f'{n}th'
  return f'{n}{ {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th") }'


def clean_report(text: str) -> str:
  """Strips whitespace and one trailing full stop (the template adds its own)."""
  text = ' '.join(str(text).split())
  return text[:-1].rstrip() if text.endswith('.') else text


def check_prompts(prompts: Sequence[str]) -> None:
  """Raises ValueError for a prompt that is not text or is only white space."""
  for prompt in prompts:
    if not isinstance(prompt, str) or not prompt.strip():
      raise ValueError(f'cannot embed an empty prompt: {prompt!r}')


def build_prompt(reports: Sequence[str], template: ml_collections.ConfigDict | dict) -> str:
  """Ordered reports (most important first) -> one prompt string."""
  reports = [clean_report(r) for r in reports]
  if not reports or not all(reports):
    raise ValueError(f'each report must be non-empty text, got {list(reports)!r}')
  if len(reports) == 1:
    return template['single'].format(text=reports[0])
  sentences = [template['first'].format(text=reports[0])]
  sentences += [template['further'].format(ordinal=ordinal(i), text=r)
                for i, r in enumerate(reports[1:], start=2)]
  return template['separator'].join(sentences)


def prompt_table(template, reports) -> tuple[list[str], np.ndarray]:
  """The distinct prompts of the records' reports (sorted) and, per record, the index of its own.
  template: the config's text.template (or its dict)."""
  prompt_text = [build_prompt(r, template) for r in reports]
  distinct = sorted(set(prompt_text))
  position = {prompt: i for i, prompt in enumerate(distinct)}
  return distinct, np.array([position[p] for p in prompt_text], np.int32)
