"""The shipped model's decoder fine-tuned against a 1-D patch discriminator, its encoder frozen,
on the 1,987 PTB-XL records with ecg_id 1-1999 (folds 1-8) and LUDB's training split
(docs/experiments/vae_decoder_adversarial.md).

  python train.py --config configs/pretrained_decoder_gan.py --workdir runs/decoder_gan \\
      --stage vae --config.data.manual_dir=/path/to/ptb-xl/1.0.3+
  python -m diffusets_jax.pretrained --export_from pretrained --vae_from runs/decoder_gan \\
      --out runs/decoder_gan_model

The encoder stays the shipped one's, so the latents, and the U-Net trained on them, stay valid:
the second command writes the shipped model with the new decoder, which evaluate.py --workdir
and sample.py --model open like any exported model.
"""
from configs import pretrained, ptbxl1999_vae


def get_config():
  config = pretrained.get_config()
  config.data = ptbxl1999_vae.get_config().data
  config.train.init_from = 'pretrained'
  config.vae.train_encoder = False
  config.vae.derived_limb_leads = True      # the shipped decoder's layout
  config.vae.adversarial_weight = 0.5       # the latent-diffusion autoencoders' setting
  config.vae.adversarial_start_step = 100   # the discriminator first learns alone
  config.vae.epochs = 20                    # 1,040 steps of 32 on 1,650 ECGs
  config.vae.learning_rate = 2e-5           # one-cycle from here to the peak and down:
  config.vae.peak_learning_rate = 1e-4      # a tenth of the shipped VAE's rates
  config.train.checkpoint_every_steps = 100
  return config
