"""The shipped pretrained model's base (`Generator.pretrained()` is this model fine-tuned by
configs/pretrained_finetune.py): trained on the bundled real ECGs, PTB-XL folds 1-8 and LUDB's
training split, on a 2-core CPU in about an hour and a half (docs/pretrained.md).

Against the paper size it is narrower (VAE channels 32/64/128, a 6-level U-Net), conditions on
MiniLM, normalises sex, age and heart rate inside the U-Net, weighs the KL term by 0.1, scales
the latents to unit variance, and trains with classifier-free guidance (10 % null condition),
dropout in the U-Net's blocks and an EMA of the U-Net weights.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'ptbxl+ludb'
  config.data.ptbxl_reports = 'scp'      # English SCP descriptions (docs/pretrained.md)
  config.vae.channels = (32, 64, 128)
  config.vae.groups = 8
  config.vae.batch_size = 32
  config.vae.epochs = 60
  config.vae.kl_anneal_epochs = 10
  config.vae.kl_weight = 0.1
  config.vae.learning_rate = 1e-3
  config.vae.peak_learning_rate = 2e-3
  # Unit-variance latents (1 / their std at scale 1): at the reference's 0.18215 only 69 of the
  # 1000 timesteps have a signal-to-noise ratio above 1 (docs/pretrained.md).
  config.vae.latent_scale = 0.61
  config.unet.num_levels = 6
  config.unet.normalize_patient = True
  # Without it the U-Net overfits its 678 training latents: held-out loss 60.3 at 8000 steps and
  # rising, against 53.0 with it (docs/experiments/dropout_and_fine_tuning.md).
  config.unet.dropout = 0.2
  config.diffusion.batch_size = 64
  config.diffusion.epochs = 800
  config.diffusion.learning_rate = 5e-4
  config.diffusion.condition_dropout = 0.1
  config.diffusion.ema_decay = 0.999
  # DDIM over 50 steps with eta 3, at or above the cap on every step, so each step draws the
  # next latent afresh around its clean estimate: on val as few pauses and as close a rate as
  # DDIM over all 1000 steps at eta 3 and guidance 3, the default before, at a twentieth of the
  # U-Net evaluations (docs/experiments/renoise_50_steps.md).
  config.sampling.sampler = 'ddim'
  config.sampling.ddim_steps = 50
  config.sampling.ddim_eta = 3.0
  config.sampling.clip = 6.0             # x0 clip at this scale: the largest training latent is 5.5
  # Between 2 (closest rate, fewest CLIP points) and 3 (closest sweep, most pauses) on val at
  # this sampler (docs/experiments/renoise_50_steps.md).
  config.sampling.guidance_scale = 2.5
  config.clip.widths = (32, 64, 128, 128)
  config.clip.text_hidden = 512
  config.clip.batch_size = 64
  config.clip.epochs = 60
  # Each rate asked with the rhythm it is, over 40-160 bpm (docs/pretrained.md).
  config.evaluation.sweep_reports = 'consistent'
  config.evaluation.sweep_rates = tuple(range(40, 161, 10))
  config.train.checkpoint_every_steps = 200
  return config
