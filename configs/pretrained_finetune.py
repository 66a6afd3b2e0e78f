"""The shipped model's second stage: the base model (configs/pretrained.py) fine-tuned with a
heart-rate clock in the U-Net (docs/pretrained.md, "Fine-tuning with a heart-rate clock").

  python train.py --config configs/pretrained.py --workdir runs/pretrained
  python -m diffusets_jax.pretrained --export_from runs/pretrained
  python train.py --config configs/pretrained_finetune.py --workdir runs/pretrained_finetune
  python -m diffusets_jax.pretrained --export_from runs/pretrained_finetune

The second command ships the base model; the third starts from it (`train.init_from`): its VAE
encodes the latents, its U-Net's EMA weights start the U-Net, and the clock's new layers start at
zero, so training begins from exactly what the base model computes. 3000 steps at a peak
learning rate of 2e-4 (the base run's was 5e-4), then the CLIP model of the evaluation.
"""
from configs import pretrained


def get_config():
  config = pretrained.get_config()
  config.train.init_from = 'pretrained'
  config.unet.heart_rate_clock = 2       # 2 harmonics: up to 4.7 Hz at 140 bpm
  config.diffusion.epochs = 300          # 3000 steps of 64 on the 678 training latents
  config.diffusion.learning_rate = 2e-4
  return config
