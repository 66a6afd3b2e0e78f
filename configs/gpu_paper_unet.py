"""A paper-size U-Net (7 levels as the reference's: 12.0 M parameters with MiniLM's 384-wide
text, 13.3 M with ada's 1536) on the shipped model's latents of the 1,987 PTB-XL records (folds
1-8) and LUDB's training split, trained on a GPU with the shipped recipe (MiniLM text, normalised
patient inputs, dropout 0.2, 10 % null condition, EMA, cosine learning rate). Not shipped: it
measures what the paper's size gives on the same data and VAE (docs/benchmarks.md, "Training on
a GPU").

  python train.py --config configs/gpu_paper_unet.py --workdir runs/gpu_latents --stage latents \\
      --config.data.manual_dir=/path/to/ptb-xl/1.0.3+
  python benchmarks/gpu_training.py --config configs/gpu_paper_unet.py \\
      --latents runs/gpu_latents/latents --minutes 6          # on the GPU machine

The shipped VAE encodes the latents (train.init_from); the U-Net starts afresh
(train.init_unet False), its number of epochs set by benchmarks/gpu_training.py to what fits
the time given.
"""
from configs import ptbxl1999_finetune


def get_config():
  config = ptbxl1999_finetune.get_config()
  config.train.init_unet = False
  # The shipped decoder as it is: I, II and V1-V6 out, the other four limb leads derived.
  config.vae.derived_limb_leads = True
  config.unet.num_levels = 7
  config.diffusion.batch_size = 128
  config.diffusion.learning_rate = 5e-4   # the shipped base run's peak, for a U-Net from scratch
  return config
