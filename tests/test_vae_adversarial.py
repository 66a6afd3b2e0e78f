"""The VAE's adversarial fine-tuning (vae.adversarial_weight, vae.train_encoder): the patch
discriminator, its losses against hand values, the frozen encoder, the step against the plain one,
and a micro decoder fine-tuned from an exported model, swapped into it, and refused where its
encoder differs."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusets_jax import config_validation, train_state
from diffusets_jax.models import factory
from diffusets_jax.models.discriminator import PatchDiscriminator
from diffusets_jax.store import exported, loading, open_model
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import losses, stages, steps


def test_the_discriminator_gives_one_logit_per_patch():
  model = PatchDiscriminator(channels=(8, 16, 16))
  ecg = jnp.ones((2, 1024, 12))
  params = model.init(jax.random.PRNGKey(0), ecg)['params']
  logits = model.apply({'params': params}, ecg)
  assert logits.shape == (2, 1024 // 8, 1)
  # Kernel 15: convs 12*15*8 + 8, 8*15*16 + 16, 16*15*16 + 16, 16*15 + 1; two group norms 2*16.
  assert factory.count_params(params) == 1448 + 1936 + 3856 + 241 + 2 * 32


def test_hinge_losses_by_hand():
  real, fake = jnp.array([2.0, 0.0, -1.0]), jnp.array([-2.0, 0.0, 0.5])
  # relu(1 - real) = 0, 1, 2; relu(1 + fake) = 0, 1, 1.5
  assert float(losses.discriminator_hinge_loss(real, fake)) == pytest.approx(1.0 + 2.5 / 3)
  assert float(losses.generator_adversarial_loss(fake)) == pytest.approx(1.5 / 3)  # -(-2+0+.5)/3


def test_the_adaptive_weight_is_the_ratio_of_gradient_norms_clipped():
  reconstruction, adversarial = jnp.full((3, 4), 2.0), jnp.full((3, 4), 0.5)
  assert float(losses.adaptive_adversarial_weight(reconstruction, adversarial)) == pytest.approx(
      4.0, rel=1e-3)
  assert float(losses.adaptive_adversarial_weight(reconstruction, jnp.zeros((3, 4)))) == (
      losses.MAX_ADAPTIVE_WEIGHT)
  grad = jax.grad(lambda x: losses.adaptive_adversarial_weight(x, adversarial))(reconstruction)
  assert not np.any(np.asarray(grad))  # held constant


def adversarial_config(config, init_from='pretrained'):
  config.train.init_from = init_from
  config.vae.train_encoder = False
  config.vae.adversarial_weight = 0.5
  config.vae.adversarial_start_step = 1
  config.vae.discriminator_channels = (8, 8, 8)
  return config


def one_step(config, adversarial_weight):
  """(state before, state after) of one replicated VAE step on 8 LUDB-shaped ECGs."""
  vae, state = train_state.vae_state(config, 10)
  ecg = jax.random.normal(jax.random.PRNGKey(1), (8, 1024, 12))
  batch = dict(ecg=ecg[None], example_index=jnp.arange(8)[None])
  discriminator = factory.make_discriminator(config) if config.vae.adversarial_weight else None
  p_step = steps.make_vae_step(vae, train_encoder=config.vae.train_encoder,
                               discriminator=discriminator)
  args = (0.1,) if discriminator is None else (0.1, adversarial_weight)
  after, metrics = p_step(steps.replicate(state), batch, jax.random.PRNGKey(2), *args)
  return state, steps.unreplicate(after), metrics


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                    jax.tree_util.tree_leaves(b)))


def test_the_frozen_encoder_gets_no_update_and_weight_0_is_the_plain_step(config):
  plain = config.copy_and_resolve_references()
  plain.train.init_from = 'pretrained'
  plain.vae.train_encoder = False
  before, plain_after, _ = one_step(plain, None)
  assert leaves_equal(before.params['encoder'], plain_after.params['encoder'])  # no decay either
  assert not leaves_equal(before.params['decoder'], plain_after.params['decoder'])

  _, off, metrics = one_step(adversarial_config(config), 0.0)
  assert isinstance(off, train_state.AdversarialVaeTrainState)
  assert leaves_equal(off.params, plain_after.params)  # the discriminator alone learns
  initial_discriminator = train_state.vae_state(config, 10)[1].discriminator_params
  assert not leaves_equal(initial_discriminator, off.discriminator_params)
  assert float(metrics['adversarial_scale'][0]) == 0.0

  _, on, metrics = one_step(config, 0.5)
  assert float(metrics['adversarial_scale'][0]) > 0
  assert leaves_equal(on.params['encoder'], before.params['encoder'])
  assert not leaves_equal(on.params['decoder'], plain_after.params['decoder'])
  assert leaves_equal(on.discriminator_params, off.discriminator_params)  # same inputs to D


def test_validation_names_the_adversarial_fields(config):
  config.vae.train_encoder = False
  with pytest.raises(ValueError, match='train.init_from'):
    config_validation.validate(config.copy_and_resolve_references())
  config.train.init_from = 'pretrained'
  config.vae.adversarial_weight = -1.0
  with pytest.raises(ValueError, match='vae.adversarial_weight'):
    config_validation.validate(config)


def test_curves_show_both_players(tmp_path, monkeypatch):
  """A VAE trained against the discriminator gets a third panel; other stages leave it blank."""
  import json
  from diffusets_jax.io import plots
  rows = [dict(step=s, loss=100.0 / s, learning_rate=1e-4, kl_weight=0.1, discriminator_loss=1.5,
               logit_real=0.2 * s, logit_reconstructed=-0.2 * s, adversarial_scale=0.5)
          for s in (1, 2, 3)]
  for stage, content in (('vae', rows), ('diffusion', [dict(r, loss=1.0) for r in rows])):
    (tmp_path / stage).mkdir()
    (tmp_path / stage / 'metrics.jsonl').write_text(
        '\n'.join(json.dumps({k: v for k, v in r.items() if stage == 'vae' or k in (
            'step', 'loss', 'learning_rate')}) for r in content) + '\n')
  figures = []
  monkeypatch.setattr(plots.plt, 'close', figures.append)
  plots.plot_training_curves(workdirs.training_logs(tmp_path), tmp_path / 'curves.png')
  axes = figures[0].axes
  assert len(axes) == 6
  assert [line.get_label() for line in axes[2].get_lines()][:3] == [
      'discriminator hinge loss', 'mean logit, real', 'mean logit, reconstructed']
  assert not axes[5].axison and not axes[5].get_lines()  # diffusion: no third panel


def test_a_decoder_fine_tuned_from_an_exported_model_swaps_into_it(guided_workdir, tmp_path):
  from diffusets_jax.pretrained.__main__ import with_vae_from
  folder = exported.export(open_model(guided_workdir, use_ema=True), tmp_path / 'exported')
  source = open_model(folder)
  config = workdirs.load_config(guided_workdir)
  config.unlock()
  config.train.init_from = str(folder)
  with pytest.raises(ValueError, match='vae.train_encoder=False'):
    stages.train_stages(config, tmp_path / 'refused', 'vae')
  config = config_validation.validate(adversarial_config(config, str(folder)))
  workdir = stages.train_stages(config, tmp_path / 'tuned', 'vae')

  state = workdirs.restore_state(workdir, 'vae', config)  # the whole state round-trips
  assert isinstance(state, train_state.AdversarialVaeTrainState)
  assert int(state.step) == 20 and state.discriminator_opt_state is not None
  tuned = loading.workdir_vae_params(config, workdir)
  assert leaves_equal(tuned['encoder'], source.vae_params['encoder'])
  assert not leaves_equal(tuned['decoder'], source.vae_params['decoder'])
  np.testing.assert_allclose(workdirs.load_latents(workdir, 'train')['latent'],
                             workdirs.load_latents(guided_workdir, 'train')['latent'], atol=1e-5)

  swapped = with_vae_from(source, workdir)
  assert leaves_equal(swapped.unet_params, source.unet_params)
  assert leaves_equal(swapped.vae_params, tuned) and swapped.config.vae.adversarial_weight == 0.5
  reopened = open_model(exported.export(swapped, tmp_path / 'swapped'))
  assert leaves_equal(reopened.vae_params['decoder'], tuned['decoder'])

  encoder = jax.tree_util.tree_map(lambda x: x + 1e-3, source.vae_params['encoder'])
  other = dataclasses.replace(source, vae_params={**source.vae_params, 'encoder': encoder})
  with pytest.raises(ValueError, match='another encoder'):
    with_vae_from(other, workdir)
