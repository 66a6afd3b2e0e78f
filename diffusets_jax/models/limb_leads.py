"""Limb leads derived from I and II, so that Einthoven's and Goldberger's relations hold exactly.

In a recording, III = II - I, aVR = -(I + II) / 2, aVL = I - II / 2 and aVF = II - I / 2: only
I, II and V1-V6 carry independent information. A decoder with `vae.derived_limb_leads` produces
those 8 leads and this module writes the 12 in standard order.
"""
import jax.numpy as jnp

from diffusets_jax.datasets.preprocessing import STANDARD_LEADS

# The leads a decoder with derived limb leads writes, in this order (I, II, then V1-V6). The
# limb-lead formulas below are written out, not taken from evaluation/metrics.py, so that the
# residual check there stays an independent test of them.
INDEPENDENT_LEADS = tuple(STANDARD_LEADS.index(name)
                          for name in ('I', 'II', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'))


def expand_limb_leads(independent, xp=jnp):
  """(..., 8) leads I, II, V1-V6 -> (..., 12) in standard order, III, aVR, aVL and aVF computed
  from I and II (elementwise, so the relations hold to the last bit of each operation). `xp`:
  jax.numpy, or numpy for weights in float64."""
  if independent.shape[-1] != len(INDEPENDENT_LEADS):
    raise ValueError(f'expected the {len(INDEPENDENT_LEADS)} independent leads I, II, V1-V6 on '
                     f'the last axis, got shape {independent.shape}')
  lead_i, lead_ii, chest = independent[..., :1], independent[..., 1:2], independent[..., 2:]
  derived = (lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2)
  return xp.concatenate((lead_i, lead_ii, *derived, chest), axis=-1)
