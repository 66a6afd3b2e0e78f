"""The reference DiffuSETS VAE and U-Net as PyTorch modules, written from the architecture
description (docs/conversion.md; channels-first, as the reference), with exactly the reference
checkpoint's tensor names, so that `load_state_dict(strict=True)` takes the authors' files and the
converter's exports (`python -m diffusets_jax.convert --export_from WORKDIR`).

This is a reimplementation for timing and for checking outputs, not the authors' code: their
inefficiencies are kept where they change the cost (the condition repeated over the length as
keys and values, the unused `block.down` convs and norms are built), their defects that change
results are not (the decoder does not modify its input in place).

Widths are parameters, so the small configs (e.g. the shipped model's) load as well as the paper
size. Interfaces: UNet(x (B, C, L), t (B,) int64, c (B, d_c)) -> eps (B, C, L);
Encoder(ecg (B, 1024, 12), noise (B, C, 128)) -> (z, mean, logvar); Decoder(z) -> (B, 1024, 12).
Leads are in the reference order (aVF before aVL), as the exported files are.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

LATENT_SCALE = 0.18215


# ---------------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------------

def time_table(num_timesteps: int = 1000, dim: int = 64) -> torch.Tensor:
  """The frozen table, built with float32 torch ops as the reference does at construction."""
  half = dim // 2
  freqs = torch.exp(-10.0 * torch.arange(half, dtype=torch.float32) / (half - 1))
  args = (torch.arange(num_timesteps, dtype=torch.float32)[:, None] + 1) * freqs[None, :]
  return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeEmbedding(nn.Module):
  def __init__(self, features: int, num_timesteps: int = 1000):
    super().__init__()
    self.register_buffer('embeddings', time_table(num_timesteps))
    self.fc1 = nn.Linear(64, 128)
    self.fc2 = nn.Linear(128, features)

  def forward(self, t):
    return self.fc2(F.mish(self.fc1(self.embeddings[t])))


class SelfAttention(nn.Module):
  def __init__(self, channels: int, hidden: int, heads: int):
    super().__init__()
    self.norm = nn.LayerNorm(channels)
    self.to_q, self.to_k, self.to_v = (nn.Linear(channels, hidden) for _ in range(3))
    self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
    self.to_out = nn.Linear(hidden, channels)

  def forward(self, x):  # (B, L, C)
    h = self.norm(x)
    out, _ = self.attention(self.to_q(h), self.to_k(h), self.to_v(h), need_weights=False)
    return x + self.to_out(out)


class CrossAttention(nn.Module):
  """Keys and values are the condition token repeated over the length, as in the reference."""

  def __init__(self, channels: int, hidden: int, heads: int, condition_dim: int):
    super().__init__()
    self.value_combiner = nn.Linear(condition_dim, channels)
    self.condition_normalization = nn.LayerNorm(channels)
    self.normalization = nn.LayerNorm(channels)
    self.to_q, self.to_k, self.to_v = (nn.Linear(channels, hidden) for _ in range(3))
    self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
    self.to_out = nn.Linear(hidden, channels)

  def forward(self, x, c):  # x (B, L, C), c (B, d_c)
    cond = self.condition_normalization(self.value_combiner(c))
    cond = cond[:, None, :].expand(-1, x.shape[1], -1)
    out, _ = self.attention(self.to_q(self.normalization(x)), self.to_k(cond), self.to_v(cond),
                            need_weights=False)
    return x + self.to_out(out)


class Block(nn.Module):
  def __init__(self, n_in: int, n_out: int, hidden: int, heads: int, kernel: int,
               condition_dim: int):
    super().__init__()
    mid = (n_in + n_out) // 2
    self.time_emb = TimeEmbedding(n_in)
    self.pre_shortcut_convs = nn.Conv1d(n_in, mid, kernel, padding=(kernel - 1) // 2)
    self.layer_norm1 = nn.GroupNorm(1, mid)
    self.shortcut_convs = nn.Conv1d(mid, mid, 1)
    self.self_attention = SelfAttention(mid, hidden, heads)
    self.cross_attention = CrossAttention(mid, hidden, heads, condition_dim)
    self.attention_norm = nn.LayerNorm(mid)
    self.post_shortcut_convs = nn.Conv1d(mid, n_out, kernel, padding=(kernel - 1) // 2)
    self.layer_norm2 = nn.GroupNorm(1, n_out)
    self.down = nn.Conv1d(n_out, n_out, 3, stride=2, padding=1)  # in the checkpoint, never used
    self.res_conv = nn.Conv1d(n_in, n_out, 1)

  def forward(self, x, t, c):  # x (B, C, L)
    h = x + self.time_emb(t)[:, :, None]
    h = self.shortcut_convs(F.mish(self.layer_norm1(self.pre_shortcut_convs(h))))
    h = h.transpose(1, 2)
    h = self.attention_norm(self.cross_attention(self.self_attention(h), c))
    h = F.mish(self.layer_norm2(self.post_shortcut_convs(h.transpose(1, 2))))
    return h + self.res_conv(x)


class DownBlock(nn.Module):
  def __init__(self, n_in, n_out, hidden, heads, kernel, condition_dim):
    super().__init__()
    self.block = Block(n_in, n_out, hidden, heads, kernel, condition_dim)
    self.down = nn.Conv1d(n_out, n_out, 3, stride=2, padding=1)

  def forward(self, x, t, c):
    skip = self.block(x, t, c)
    return self.down(skip), skip


class UpBlock(nn.Module):
  def __init__(self, n_up, n_in, n_out, hidden, heads, kernel, condition_dim):
    super().__init__()
    self.up = nn.ConvTranspose1d(n_up, n_up, 4, stride=2, padding=1)
    self.block = Block(n_in, n_out, hidden, heads, kernel, condition_dim)

  def forward(self, x, skip, t, c):
    x = self.up(x)
    if skip is not None:
      x = torch.cat([x, skip], dim=1)
    return self.block(x, t, c)


class Bottleneck(nn.Module):
  def __init__(self, channels, hidden, heads, condition_dim):
    super().__init__()
    self.time_emb = TimeEmbedding(channels)
    self.bottleneck_conv1 = nn.Conv1d(channels, channels, 3, padding=1)
    self.bottleneck_layer_norm1 = nn.GroupNorm(1, channels)
    self.bottleneck_conv1_2 = nn.Conv1d(channels, channels, 3, padding=1)
    self.self_attention = SelfAttention(channels, hidden, heads)
    self.cross_attention = CrossAttention(channels, hidden, heads, condition_dim)
    self.attention_norm = nn.LayerNorm(channels)
    self.bottleneck_conv2 = nn.Conv1d(channels, channels, 3, padding=1)
    self.bottleneck_layer_norm2 = nn.GroupNorm(1, channels)

  def forward(self, x, t, c):
    h = x + self.time_emb(t)[:, :, None]
    h = F.mish(self.bottleneck_layer_norm1(self.bottleneck_conv1(h)))
    h = self.bottleneck_conv1_2(h).transpose(1, 2)
    h = self.attention_norm(self.cross_attention(self.self_attention(h), c))
    h = F.mish(self.bottleneck_layer_norm2(self.bottleneck_conv2(h.transpose(1, 2))))
    return h + x


class UNet(nn.Module):
  """Reference: num_levels=7, n_channels=4, kernel_size=7, text_embed_dim=1536 (d_c = 1539)."""

  def __init__(self, num_levels: int = 7, n_channels: int = 4, kernel_size: int = 7,
               text_embed_dim: int = 1536, heads: int = 8, bottleneck_hidden: int = 32,
               bottleneck_heads: int = 4):
    super().__init__()
    depth = num_levels - 1
    d_c = text_embed_dim + 3
    widths = [n_channels * 2 ** i for i in range(depth + 1)]
    self.downsampling_blocks = nn.ModuleList(
        DownBlock(widths[i], widths[i + 1], 2 * widths[i], heads, kernel_size, d_c)
        for i in range(depth))
    self.bottelneck = Bottleneck(widths[depth], bottleneck_hidden, bottleneck_heads, d_c)
    ups, channels = [], widths[depth]
    for j in range(depth):
      n_in = channels * (2 if j > 0 else 1)
      ups.append(UpBlock(channels, n_in, widths[depth - 1 - j], 2 * n_in, heads, kernel_size,
                         d_c))
      channels = widths[depth - 1 - j]
    self.upsampling_blocks = nn.ModuleList(ups)
    self.output_conv = nn.Sequential(nn.Conv1d(n_channels, n_channels, 3, padding=1), nn.Mish(),
                                     nn.Conv1d(n_channels, n_channels, 1))

  def forward(self, x, t, c):
    skips = []
    for block in self.downsampling_blocks:
      x, skip = block(x, t, c)
      skips.append(skip)
    skips.pop()  # the deepest skip is unused
    x = self.bottelneck(x, t, c)
    for j, block in enumerate(self.upsampling_blocks):
      x = block(x, skips.pop() if j > 0 else None, t, c)
    return self.output_conv(x)


# ---------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
  def __init__(self, n_in, n_out, groups):
    super().__init__()
    self.groupnorm_1 = nn.GroupNorm(groups, n_in)
    self.conv_1 = nn.Conv1d(n_in, n_out, 3, padding=1)
    self.groupnorm_2 = nn.GroupNorm(groups, n_out)
    self.conv_2 = nn.Conv1d(n_out, n_out, 3, padding=1)
    self.residual_layer = nn.Identity() if n_in == n_out else nn.Conv1d(n_in, n_out, 1)

  def forward(self, x):
    h = self.conv_1(F.silu(self.groupnorm_1(x)))
    h = self.conv_2(F.silu(self.groupnorm_2(h)))
    return self.residual_layer(x) + h


class VAESelfAttention(nn.Module):
  def __init__(self, channels):
    super().__init__()
    self.in_proj = nn.Linear(channels, 3 * channels)
    self.out_proj = nn.Linear(channels, channels)

  def forward(self, x):  # (B, L, C)
    q, k, v = self.in_proj(x).chunk(3, dim=-1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(x.shape[-1]), dim=-1)
    return self.out_proj(weights @ v)


class AttentionBlock(nn.Module):
  def __init__(self, channels, groups):
    super().__init__()
    self.groupnorm = nn.GroupNorm(groups, channels)  # in the checkpoint, never applied
    self.attention = VAESelfAttention(channels)

  def forward(self, x):  # (B, C, L)
    return x + self.attention(x.transpose(1, 2)).transpose(1, 2)


class Encoder(nn.Sequential):
  def __init__(self, channels=(128, 256, 512), groups: int = 32, latent_channels: int = 4,
               leads: int = 12):
    c1, c2, c3 = channels
    g = groups
    super().__init__(
        nn.Conv1d(leads, c1, 3, padding=1),
        ResidualBlock(c1, c1, g), ResidualBlock(c1, c1, g),
        nn.Conv1d(c1, c1, 3, stride=2),
        ResidualBlock(c1, c2, g), ResidualBlock(c2, c2, g),
        nn.Conv1d(c2, c2, 3, stride=2),
        ResidualBlock(c2, c3, g), ResidualBlock(c3, c3, g),
        nn.Conv1d(c3, c3, 3, stride=2),
        ResidualBlock(c3, c3, g), ResidualBlock(c3, c3, g), ResidualBlock(c3, c3, g),
        AttentionBlock(c3, g),
        ResidualBlock(c3, c3, g),
        nn.GroupNorm(g, c3), nn.SiLU(),
        nn.Conv1d(c3, 2 * latent_channels, 3, padding=1),
        nn.Conv1d(2 * latent_channels, 2 * latent_channels, 1))

  def forward(self, ecg, noise):
    x = ecg.transpose(1, 2)
    for module in self:
      if isinstance(module, nn.Conv1d) and module.stride == (2,):
        x = F.pad(x, (0, 1))  # right pad by one before each stride-2 conv
      x = module(x)
    mean, logvar = x.chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    z = (mean + torch.exp(0.5 * logvar) * noise) * LATENT_SCALE
    return z, mean, logvar


class Decoder(nn.Sequential):
  def __init__(self, channels=(128, 256, 512), groups: int = 32, latent_channels: int = 4,
               leads: int = 12):
    c1, c2, c3 = channels
    g = groups
    super().__init__(
        nn.Conv1d(latent_channels, latent_channels, 1),
        nn.Conv1d(latent_channels, c3, 3, padding=1),
        ResidualBlock(c3, c3, g), AttentionBlock(c3, g),
        ResidualBlock(c3, c3, g), ResidualBlock(c3, c3, g), ResidualBlock(c3, c3, g),
        ResidualBlock(c3, c3, g),
        nn.Upsample(scale_factor=2), nn.Conv1d(c3, c3, 3, padding=1),
        ResidualBlock(c3, c3, g), ResidualBlock(c3, c3, g), ResidualBlock(c3, c3, g),
        nn.Upsample(scale_factor=2), nn.Conv1d(c3, c3, 3, padding=1),
        ResidualBlock(c3, c2, g), ResidualBlock(c2, c2, g), ResidualBlock(c2, c2, g),
        nn.Upsample(scale_factor=2), nn.Conv1d(c2, c2, 3, padding=1),
        ResidualBlock(c2, c1, g), ResidualBlock(c1, c1, g), ResidualBlock(c1, c1, g),
        nn.GroupNorm(g, c1), nn.SiLU(),
        nn.Conv1d(c1, leads, 3, padding=1))

  def forward(self, z):  # z (B, C, 128) -> (B, 1024, leads)
    return super().forward(z / LATENT_SCALE).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Loading an export
# ---------------------------------------------------------------------------------------------

def read_state(path) -> dict:
  """A state dict from .pth (weights only: nothing is unpickled but tensors) or .safetensors."""
  path = str(path)
  if path.endswith('.safetensors'):
    from safetensors.torch import load_file
    flat = load_file(path)
    if any(k.startswith(('encoder.', 'decoder.')) for k in flat):
      parts = {}
      for key, value in flat.items():
        part, name = key.split('.', 1)
        parts.setdefault(part, {})[name] = value
      return parts
    return flat
  return torch.load(path, map_location='cpu', weights_only=True)


def unet_from_state(state: dict) -> UNet:
  """A U-Net sized from the state dict's shapes, loaded strictly."""
  levels = 1 + len({k.split('.')[1] for k in state if k.startswith('downsampling_blocks.')})
  first = state['downsampling_blocks.0.block.pre_shortcut_convs.weight']
  d_c = state['bottelneck.cross_attention.value_combiner.weight'].shape[1]
  model = UNet(num_levels=levels, n_channels=state['output_conv.2.weight'].shape[0],
               kernel_size=first.shape[2], text_embed_dim=d_c - 3,
               bottleneck_hidden=state['bottelneck.self_attention.to_q.weight'].shape[0])
  model.load_state_dict(state, strict=True)
  return model.eval()


def vae_from_state(state: dict, groups: int) -> tuple[Encoder, Decoder]:
  """Encoder and decoder sized from the state dicts ({'encoder', 'decoder'}), loaded strictly.
  `groups` is the GroupNorm group count (32 in the reference), which shapes cannot tell."""
  enc, dec = state['encoder'], state['decoder']
  channels = (enc['0.weight'].shape[0], enc['4.conv_1.weight'].shape[0],
              enc['7.conv_1.weight'].shape[0])
  latent = enc['18.weight'].shape[0] // 2
  encoder = Encoder(channels, groups, latent, enc['0.weight'].shape[1])
  decoder = Decoder(channels, groups, latent, dec['25.weight'].shape[0])
  encoder.load_state_dict(enc, strict=True)
  decoder.load_state_dict(dec, strict=True)
  return encoder.eval(), decoder.eval()
