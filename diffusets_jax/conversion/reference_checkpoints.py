"""The authors' PyTorch state dicts <-> our Flax params (ARCHITECTURE.md section 8).

Names are derived from our own parameter tree, so each of our leaves has exactly one reference
name, and anything missing, extra or misshapen on either side is reported by name:
- U-Net: `downsampling_blocks_0/block/res_conv/kernel` <-> `downsampling_blocks.0.block.res_conv.weight`.
- VAE: our modules carry the reference's Sequential index (`res_4`, `attn_13`), so
  `encoder/res_4/conv_1/kernel` <-> `encoder.4.conv_1.weight`; the VAE attention's projections sit
  under `attention.` in the reference.
Layouts: Conv1d (out, in, k) <-> (k, in, out); ConvTranspose1d (in, out, k) <-> (k, in, out)
flipped along k; Linear and MultiheadAttention in_proj (out, in) <-> (in, out); norm weight <->
scale. The U-Net's frozen time tables are not parameters here: on import each is checked
against our recomputation (within TIME_TABLE_TOLERANCE) and kept, so the converted model runs
on the checkpoint's own tables (`time_tables_tree`); export writes them back.

Lead order: the reference's channels are I, II, III, aVR, aVF, aVL, V1-V6; ours are standard
(aVL before aVF). The VAE encoder's input conv and the decoder's output conv are permuted, so
the converted model reads and writes standard order. The permutation is its own inverse.
"""
import re

import numpy as np
import jax

from diffusets_jax.conditioning import patient
from diffusets_jax.models import limb_leads
from diffusets_jax.models.unet import time_table
from diffusets_jax.models.vae import LATENT_SCALE

# Reference channel i holds our channel REFERENCE_LEAD_ORDER[i] (and vice versa): aVL <-> aVF.
REFERENCE_LEAD_ORDER = np.array([0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11])
# The authors build each table in float32 with torch ops: (i + 1) * exp(-10 k / 31), then sin
# and cos. The largest argument is 1000, where one float32 ulp is 2**-14 = 6.1e-5; the float32
# exp, the product and the sin/cos each add up to about one ulp of the argument, so a genuine
# table is within ~3 ulps of the float64 one (6e-5 measured). The bound is 4 ulps at 1000:
# 2.4e-4. Any other table (log 10000 frequencies, i instead of i + 1, another factor) differs
# by more than 1e-2.
TIME_TABLE_TOLERANCE = 4 * float(np.spacing(np.float32(1000.0)))


def _flat(params) -> dict[str, tuple]:
  """{'a/b/kernel': leaf} over a params tree (arrays or ShapeDtypeStructs)."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {'/'.join(k.key for k in path): leaf for path, leaf in leaves}


def _unflat(flat: dict) -> dict:
  tree = {}
  for name, value in flat.items():
    *parents, leaf = name.split('/')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


_LEAF_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
               'in_proj_kernel': 'in_proj_weight', 'in_proj_bias': 'in_proj_bias'}


def unet_reference_name(ours: str) -> str:
  """'downsampling_blocks_0/block/to_q/kernel' -> 'downsampling_blocks.0.block.to_q.weight'."""
  *modules, leaf = ours.split('/')
  modules = [re.sub(r'^(downsampling_blocks|upsampling_blocks|output_conv)_(\d+)$', r'\1.\2', m)
             for m in modules]
  return '.'.join(modules + [_LEAF_NAMES[leaf]])


def vae_reference_name(ours: str) -> str:
  """'encoder/res_4/conv_1/kernel' -> 'encoder.4.conv_1.weight' (the Sequential index);
  'encoder/attn_13/in_proj/kernel' -> 'encoder.13.attention.in_proj.weight'."""
  part, module, *rest = ours.split('/')
  index = module.rsplit('_', 1)[1]
  if module.startswith('attn_') and rest[0] in ('in_proj', 'out_proj'):
    rest = ['attention'] + rest
  return '.'.join([part, index] + rest[:-1] + [_LEAF_NAMES[rest[-1]]])


def _is_transposed_conv(ours: str) -> bool:
  return ours.split('/')[-2] == 'up' and ours.startswith('upsampling_blocks_')


def to_ours(name: str, tensor: np.ndarray) -> np.ndarray:
  """One reference tensor in our layout (our leaf name decides the transform)."""
  leaf = name.split('/')[-1]
  if leaf in ('kernel', 'in_proj_kernel') and tensor.ndim == 3:
    if _is_transposed_conv(name):
      return np.ascontiguousarray(np.transpose(tensor, (2, 0, 1))[::-1])
    return np.ascontiguousarray(np.transpose(tensor, (2, 1, 0)))
  if leaf in ('kernel', 'in_proj_kernel') and tensor.ndim == 2:
    return np.ascontiguousarray(tensor.T)
  return tensor


def to_reference(name: str, array: np.ndarray) -> np.ndarray:
  """The inverse of to_ours."""
  leaf = name.split('/')[-1]
  if leaf in ('kernel', 'in_proj_kernel') and array.ndim == 3:
    if _is_transposed_conv(name):
      return np.ascontiguousarray(np.transpose(array[::-1], (1, 2, 0)))
    return np.ascontiguousarray(np.transpose(array, (2, 1, 0)))
  if leaf in ('kernel', 'in_proj_kernel') and array.ndim == 2:
    return np.ascontiguousarray(array.T)
  return array


def reference_shape(name: str, shape: tuple) -> tuple:
  return to_reference(name, np.zeros(shape, np.uint8)).shape


def _permute_leads(flat: dict) -> dict:
  """Swaps aVL/aVF in the encoder's input and the decoder's output channels (self-inverse)."""
  out = dict(flat)
  for ours in flat:
    if ours.startswith('encoder/conv_in_0/kernel'):
      out[ours] = flat[ours][:, REFERENCE_LEAD_ORDER, :]
    elif ours.startswith('decoder/conv_out_') and ours.endswith('/kernel'):
      out[ours] = flat[ours][:, :, REFERENCE_LEAD_ORDER]
    elif ours.startswith('decoder/conv_out_') and ours.endswith('/bias'):
      out[ours] = flat[ours][REFERENCE_LEAD_ORDER]
  return out


class LayoutError(ValueError):
  """A state dict that does not have the reference layout; the message names every tensor."""


def _convert(state: dict, target, reference_name, what: str, ignored=()) -> dict:
  problems, flat = [], {}
  used = set()
  for ours, leaf in _flat(target).items():
    name = reference_name(ours)
    expected = reference_shape(ours, tuple(leaf.shape))
    if name not in state:
      problems.append(f'missing {name} {list(expected)}')
      continue
    used.add(name)
    tensor = np.asarray(state[name])
    if tuple(tensor.shape) != expected:
      problems.append(f'misshapen {name}: {list(tensor.shape)}, expected {list(expected)}')
      continue
    flat[ours] = to_ours(ours, tensor.astype(np.float32))
  extra = sorted(set(state) - used - set(ignored))
  problems += [f'unexpected {name} {list(np.shape(state[name]))}' for name in extra]
  if problems:
    shown = '\n  '.join(problems[:20])
    more = f'\n  ... and {len(problems) - 20} more' if len(problems) > 20 else ''
    raise LayoutError(f'{what} does not have the reference layout ({len(problems)} problem(s)):'
                      f'\n  {shown}{more}')
  return flat


def time_table_names(target) -> list[str]:
  """Reference names of the U-Net's frozen time tables, one per TimeEmbedding."""
  # Each table sits beside its TimeEmbedding's fc1: '<block>.time_emb.embeddings'.
  return sorted(unet_reference_name(ours).removesuffix('fc1.bias') + 'embeddings'
                for ours in _flat(target) if ours.endswith('/time_emb/fc1/bias'))


def check_time_table(name: str, table) -> None:
  """Raises LayoutError (naming the tensor and the difference) unless `table` is the DiffuSETS
  time table up to float32 rounding (TIME_TABLE_TOLERANCE)."""
  expected = time_table()
  table = np.asarray(table)
  if table.shape != expected.shape:
    raise LayoutError(f'{name} has shape {list(table.shape)}, expected the time table\'s '
                      f'{list(expected.shape)}: not a DiffuSETS U-Net')
  error = float(np.max(np.abs(table.astype(np.float64) - expected)))
  if not error <= TIME_TABLE_TOLERANCE:  # NaN fails too
    raise LayoutError(f'{name} differs from the reference time table by {error:.2e} '
                      f'(tolerance {TIME_TABLE_TOLERANCE:.2e}, 4 float32 ulps at argument '
                      f'1000): not a DiffuSETS U-Net')


def unet_from_reference(state: dict, target) -> dict:
  """Reference U-Net state dict (name -> array) -> our params, shaped like `target`. The time
  tables are checked here; `time_tables_tree` makes them usable by the model."""
  tables = time_table_names(target)
  flat = _convert(state, target, unet_reference_name, 'the U-Net state dict', ignored=tables)
  for name in tables:
    if name not in state:
      raise LayoutError(f'the U-Net state dict lacks the frozen time table {name}')
    check_time_table(name, state[name])
  return _unflat(flat)


def time_tables_tree(tables: dict, target) -> dict:
  """{reference table name: (1000, 64)} -> the U-Net's 'time_tables' variable collection
  ({'downsampling_blocks_0': {'block': {'time_emb': {'embeddings': ...}}}, ...}), which
  TimeEmbedding reads instead of its recomputed table."""
  flat = {}
  for ours in _flat(target):
    if ours.endswith('/time_emb/fc1/bias'):
      name = unet_reference_name(ours).removesuffix('fc1.bias') + 'embeddings'
      check_time_table(name, tables[name])
      flat[ours.removesuffix('fc1/bias') + 'embeddings'] = np.asarray(tables[name], np.float32)
  return _unflat(flat)


def unet_to_reference(params, time_tables: dict | None = None) -> dict:
  """Our U-Net params -> reference state dict (name -> float32 array), time tables included
  (`time_tables` if given, e.g. those read on import, otherwise recomputed)."""
  state = {unet_reference_name(ours): to_reference(ours, np.asarray(leaf, np.float32))
           for ours, leaf in _flat(params).items()}
  for name in time_table_names(params):
    state[name] = np.asarray((time_tables or {}).get(name, time_table()), np.float32)
  return state


def reference_equivalent_unet(params, normalize_patient: bool) -> dict:
  """Our U-Net params -> params of a plain reference U-Net computing the same eps_hat (up to
  float32 rounding), for export. The options the reference lacks are removed:
  - normalize_patient: c reaches the network only through the cross-attentions'
    value_combiner (a Dense), so the fixed affine map c -> (c - centre) / scale folds into
    each: kernel / scale row-wise, bias - (centre / scale) @ kernel;
  - null_condition (the guidance's unconditional input) is dropped: the reference samples
    without guidance, which is guidance scale 1, and that never reads it."""
  flat = {name: np.asarray(leaf, np.float32) for name, leaf in _flat(params).items()
          if name != 'null_condition'}
  if any('heart_rate_clock' in name for name in flat):
    raise ValueError('this U-Net was trained with unet.heart_rate_clock, which the reference '
                     'U-Net has no counterpart for: it cannot be exported in its layout')
  if normalize_patient:
    for name in [n for n in flat if n.endswith('value_combiner/kernel')]:
      kernel = flat[name].astype(np.float64)
      shift = np.zeros(kernel.shape[0])
      scale = np.ones(kernel.shape[0])
      shift[-3:] = patient.NORMALIZATION_CENTRE
      scale[-3:] = patient.NORMALIZATION_SCALE
      bias_name = name[:-len('kernel')] + 'bias'
      flat[bias_name] = (flat[bias_name] - (shift / scale) @ kernel).astype(np.float32)
      flat[name] = (kernel / scale[:, None]).astype(np.float32)
  return _unflat(flat)


def reference_equivalent_vae(params, latent_scale: float,
                             derived_limb_leads: bool = False) -> dict:
  """Our VAE params at `latent_scale` -> params of a reference VAE (scale 0.18215) whose
  latents are ours, for export. With k = latent_scale / 0.18215, the encoder's last conv
  outputs mean * k and logvar + 2 ln k (the posterior of z / 0.18215 * latent_scale), and the
  decoder's first 1x1 conv reads its input times 1 / k. Exact up to float32 rounding while
  logvar stays inside its clip bounds (-30, 20). A decoder with derived limb leads writes 8
  leads; the derivation is linear, so it folds into a 12-channel last conv."""
  if derived_limb_leads:
    params = limb_leads.unfold_from_decoder(params)
  flat = {name: np.asarray(leaf, np.float32) for name, leaf in _flat(params).items()}
  k = np.float64(latent_scale) / LATENT_SCALE
  if k == 1.0:
    return _unflat(flat)
  mean = slice(0, flat['encoder/conv_18/bias'].shape[0] // 2)
  logvar = slice(mean.stop, None)
  kernel = flat['encoder/conv_18/kernel'].astype(np.float64)
  bias = flat['encoder/conv_18/bias'].astype(np.float64)
  kernel[..., mean] *= k
  bias[mean] *= k
  bias[logvar] += 2.0 * np.log(k)
  flat['encoder/conv_18/kernel'] = kernel.astype(np.float32)
  flat['encoder/conv_18/bias'] = bias.astype(np.float32)
  flat['decoder/conv_in_0/kernel'] = (flat['decoder/conv_in_0/kernel'].astype(np.float64)
                                      / k).astype(np.float32)
  return _unflat(flat)


def vae_from_reference(state: dict, target, standard_lead_order: bool = True) -> dict:
  """Reference VAE {'encoder': sd, 'decoder': sd} -> our params; standard_lead_order=False
  keeps the reference's aVF-before-aVL channels (for checking the permutation)."""
  if not isinstance(state, dict) or set(state) != {'encoder', 'decoder'}:
    keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
    raise LayoutError(f'a reference VAE file holds a dict with exactly the keys encoder and '
                      f'decoder (each a state dict); this one has {keys}')
  joined = {f'{part}.{name}': tensor for part in ('encoder', 'decoder')
            for name, tensor in state[part].items()}
  flat = _convert(joined, target, vae_reference_name, 'the VAE state dict')
  return _unflat(_permute_leads(flat) if standard_lead_order else flat)


def vae_to_reference(params) -> dict:
  """Our VAE params -> {'encoder': sd, 'decoder': sd} in the reference lead order."""
  flat = _permute_leads({k: np.asarray(v, np.float32) for k, v in _flat(params).items()})
  state = {'encoder': {}, 'decoder': {}}
  for ours, leaf in flat.items():
    part, name = vae_reference_name(ours).split('.', 1)
    state[part][name] = to_reference(ours, leaf)
  return state


def text_dim_from_unet(state: dict) -> int:
  """The text embedding width: value_combiner weights are (channels, text_dim + 3)."""
  widths = {np.shape(t)[1] - 3 for name, t in state.items()
            if name.endswith('cross_attention.value_combiner.weight')}
  if len(widths) != 1:
    raise LayoutError(f'cannot infer the text width: value_combiner input widths {sorted(widths)}')
  return widths.pop()
