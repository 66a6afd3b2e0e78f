"""The shipped model's second stage: the base model (configs/pretrained.py) trained 3000 steps
more at a lower learning rate (docs/experiments/dropout_and_fine_tuning.md).

  python train.py --config configs/pretrained.py --workdir runs/pretrained
  python -m diffusets_jax.pretrained --export_from runs/pretrained
  python train.py --config configs/pretrained_finetune.py --workdir runs/pretrained_finetune
  python -m diffusets_jax.pretrained --export_from runs/pretrained_finetune --derive_limb_leads

The second command ships the base model; the third starts from it (`train.init_from`): its VAE
encodes the latents and its U-Net's EMA weights start the U-Net. 3000 steps at a peak learning
rate of 2e-4 (the base run's was 5e-4), with the base run's U-Net dropout of 0.2, then the CLIP
model of the evaluation. The last export folds the 12-lead decoder into one that computes III,
aVR, aVL and aVF from I and II (the shipped model's `vae.derived_limb_leads`).
"""
from configs import pretrained


def get_config():
  config = pretrained.get_config()
  config.train.init_from = 'pretrained'
  config.diffusion.epochs = 300          # 3000 steps of 64 on the 678 training latents
  config.diffusion.learning_rate = 2e-4
  return config
