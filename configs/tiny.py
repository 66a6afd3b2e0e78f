"""A tiny DiffuSETS for the CPU demo and the tests: same structure, narrow and shallow."""
from configs import default


def get_config():
  config = default.get_config()
  config.vae.channels = (16, 32, 32)
  config.vae.groups = 8
  config.vae.batch_size = 32
  config.vae.epochs = 50
  config.vae.kl_anneal_epochs = 10
  config.vae.learning_rate = 1e-3
  config.vae.peak_learning_rate = 2e-3
  config.unet.num_levels = 4
  config.unet.kernel = 7
  config.diffusion.batch_size = 32
  config.diffusion.epochs = 150
  config.diffusion.learning_rate = 2e-3
  config.clip.widths = (16, 32, 64, 64)
  config.clip.text_hidden = 256
  config.clip.batch_size = 32
  config.clip.epochs = 60
  config.evaluation.sweep_samples = 8
  config.train.checkpoint_every_steps = 200
  config.train.log_every_steps = 5
  return config
