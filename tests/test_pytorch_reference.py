"""The PyTorch reference architecture (benchmarks/pytorch_reference/models.py): it loads the
converter's export of a workdir strictly and computes what our Flax models compute."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

torch = pytest.importorskip('torch')

from benchmarks.pytorch_reference import models  # noqa: E402
from diffusets_jax.conversion import reference_checkpoints as ref  # noqa: E402
from diffusets_jax.generate import Generator  # noqa: E402
from diffusets_jax.models import factory  # noqa: E402
from diffusets_jax.store import open_model, reference  # noqa: E402
from diffusets_jax.store import workdir as workdirs  # noqa: E402

AGREEMENT = 1e-4  # relative L2 error, float32 against float32


def relative_error(ours, theirs) -> float:
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def channels_first(x):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 2, 1)))


def unet_agreement(unet, variables, torch_unet, d_c, latent_channels, batch=3):
  """Relative error of our U-Net against the PyTorch one on the same random inputs."""
  rng = np.random.default_rng(0)
  z = rng.standard_normal((batch, 128, latent_channels)).astype(np.float32)
  t = np.array([0, 517, 999][:batch])
  c = (0.1 * rng.standard_normal((batch, d_c))).astype(np.float32)
  c[:, -3:] = [[1.0, 63.0, 72.0], [0.0, 30.0, 110.0], [1.0, 80.0, 45.0]][:batch]
  ours = np.asarray(jax.jit(unet.apply)(variables, jnp.asarray(z), jnp.asarray(t),
                                         jnp.asarray(c)))
  with torch.no_grad():
    theirs = torch_unet(channels_first(z), torch.from_numpy(t), torch.from_numpy(c))
  return relative_error(ours, theirs.numpy().transpose(0, 2, 1))


def vae_agreement(vae, params, encoder, decoder, latent_channels):
  """Relative errors of our encoder's (mean, logvar) and decoder against PyTorch's. Our models
  use the standard lead order; the reference's aVF comes before aVL."""
  rng = np.random.default_rng(1)
  ecg = (0.3 * rng.standard_normal((2, 1024, 12))).astype(np.float32)
  noise = rng.standard_normal((2, 128, latent_channels)).astype(np.float32)
  encode = jax.jit(lambda p, x, n: vae.apply({'params': p}, x, n, method=vae.encode))
  decode = jax.jit(lambda p, z: vae.apply({'params': p}, z, method=vae.decode))
  _, mean, logvar = encode(params, jnp.asarray(ecg), jnp.asarray(noise))
  with torch.no_grad():
    _, their_mean, their_logvar = encoder(
        torch.from_numpy(np.ascontiguousarray(ecg[..., ref.REFERENCE_LEAD_ORDER])),
        channels_first(noise))
  z = (0.2 * rng.standard_normal((2, 128, latent_channels))).astype(np.float32)
  decoded = np.asarray(decode(params, jnp.asarray(z)))
  with torch.no_grad():
    their_decoded = decoder(channels_first(z)).numpy()
  return {'mean': relative_error(mean, their_mean.numpy().transpose(0, 2, 1)),
          'logvar': relative_error(logvar, their_logvar.numpy().transpose(0, 2, 1)),
          'decoded': relative_error(decoded[..., ref.REFERENCE_LEAD_ORDER], their_decoded)}


def test_reference_model_loads_an_export_of_a_workdir_and_agrees(guided_workdir, tmp_path):
  """A workdir trained a few steps (with EMA, so the export must carry the sampling weights),
  exported by the converter, loaded strictly into the PyTorch modules."""
  generator = Generator.from_workdir(guided_workdir)
  config = generator.config
  # The options the reference lacks are on, so the export has to fold or drop them.
  assert config.unet.normalize_patient and config.diffusion.condition_dropout > 0
  states = {}
  for file_format in ('pth', 'safetensors'):
    for path in reference.export_reference(open_model(guided_workdir), tmp_path / file_format,
                                           file_format):
      states[file_format, path.stem] = models.read_state(path)
  flat = lambda vae: {f'{part}.{name}': v for part, sd in vae.items() for name, v in sd.items()}
  for pth, safetensors in ((states['pth', 'unet_all'], states['safetensors', 'unet_all']),
                           (flat(states['pth', 'vae_model']),
                            flat(states['safetensors', 'vae_model']))):
    assert pth.keys() == safetensors.keys()  # both formats hold the same tensors
    assert all(torch.equal(pth[k], safetensors[k]) for k in pth)
  unet_state, vae_state = states['pth', 'unet_all'], states['pth', 'vae_model']
  torch_unet = models.unet_from_state(unet_state)
  encoder, decoder = models.vae_from_state(vae_state, config.vae.groups)
  channels = factory.latent_shape(config)[-1]
  _, unet_variables = generator.params()
  error = unet_agreement(generator.unet, unet_variables, torch_unet,
                         factory.condition_dim(config), channels)
  assert error < AGREEMENT, error
  for name, error in vae_agreement(generator.vae, generator.vae_params, encoder, decoder,
                                   channels).items():
    assert error < AGREEMENT, (name, error)
  # The agreement is not vacuous: the raw (non-EMA) weights compute something else.
  raw = dict(unet_variables, params=raw_unet_params(guided_workdir))
  assert unet_agreement(generator.unet, raw, torch_unet, factory.condition_dim(config),
                        channels) > 100 * AGREEMENT


def raw_unet_params(workdir):
  config = workdirs.load_config(workdir)
  return workdirs.restore_state(workdir, 'diffusion', config).params


def test_reference_model_refuses_a_wrong_state():
  state = models.UNet(num_levels=2, n_channels=4, kernel_size=7, text_embed_dim=5,
                      bottleneck_hidden=16).state_dict()
  del state['output_conv.2.bias']
  with pytest.raises(RuntimeError, match='output_conv.2.bias'):
    models.unet_from_state(state)
