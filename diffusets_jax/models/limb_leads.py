"""Limb leads derived from I and II, so that Einthoven's and Goldberger's relations hold exactly.

In a recording, III = II - I, aVR = -(I + II) / 2, aVL = I - II / 2 and aVF = II - I / 2: only
I, II and V1-V6 carry independent information. A decoder with `vae.derived_limb_leads` produces
those 8 leads and this module writes the 12 in standard order. `fold_into_decoder` turns a
trained 12-lead decoder into such a decoder without training.
"""
import numpy as np
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


# The six limb leads (I, II, III, aVR, aVL, aVF) as combinations of I and II.
LIMB_FROM_I_II = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [-0.5, -0.5], [1.0, -0.5],
                           [-0.5, 1.0]])


def independent_from_twelve(leads):
  """(..., 12) leads in standard order -> (..., 8) I, II, V1-V6 (numpy, float64): I and II as
  the least-squares fit to all six limb leads, so expanding them again gives the consistent limb
  leads nearest to the six given (an orthogonal projection); V1-V6 unchanged."""
  leads = np.asarray(leads, np.float64)
  i_ii = leads[..., :6] @ np.linalg.pinv(LIMB_FROM_I_II).T
  return np.concatenate([i_ii, leads[..., 6:]], axis=-1)


def _map_last_conv(vae_params, outputs: int, description: str, leads_fn) -> dict:
  """vae_params with `leads_fn` applied to the output-channel axis of the decoder's last conv
  (kernel and bias, in float64), after checking it has `outputs` channels; every other weight
  is shared."""
  conv = vae_params['decoder']['conv_out_25']
  if conv['bias'].shape != (outputs,):
    raise ValueError(f'expected {description}, whose last conv has {outputs} outputs; this one '
                     f'has {conv["bias"].shape[0]}')
  mapped = {name: np.asarray(leads_fn(np.asarray(value, np.float64)), np.float32)
            for name, value in conv.items()}
  return {**vae_params, 'decoder': {**vae_params['decoder'], 'conv_out_25': mapped}}


def fold_into_decoder(vae_params) -> dict:
  """VAE params with a 12-lead last conv -> params of the same VAE with `derived_limb_leads`:
  `independent_from_twelve` is linear, so applied to the last conv's output channels (kernel
  and bias) it gives an 8-lead conv whose expanded output is the 12-lead decoder's output with
  its limb leads projected onto the consistent ones. Every other weight is shared."""
  return _map_last_conv(vae_params, 12, 'a decoder writing 12 leads (not one that already '
                        'derived limb leads)', independent_from_twelve)


def unfold_from_decoder(vae_params) -> dict:
  """The inverse layout change: params of a VAE with `derived_limb_leads` -> params of a 12-lead
  VAE computing the same ECGs (the derivation is linear, so it folds into a 12-output last conv).
  Every other weight is shared."""
  return _map_last_conv(vae_params, len(INDEPENDENT_LEADS), 'a decoder deriving its limb leads',
                        lambda independent: expand_limb_leads(independent, np))
