"""A VAE for the 1,987 PTB-XL records with ecg_id 1-1999 (folds 1-8) and LUDB's training split:
the shipped model's VAE recipe with derived limb leads and the multi-resolution spectral loss.

  python train.py --config configs/ptbxl1999_vae.py --workdir runs/ptbxl1999_vae --stage vae \\
      --config.data.manual_dir=/path/to/ptb-xl/1.0.3+

`--stage vae` trains it and encodes the latents. `--config.vae.spectral_weight=0` is the same VAE
without the spectral loss (docs/experiments/vae_spectral_loss.md).
"""
from configs import pretrained


def get_config():
  config = pretrained.get_config()
  # A placeholder that fails with the download instructions until the folder is given.
  config.data.manual_dir = 'PTBXL_1_0_3_DIR+'
  config.data.ptbxl_max_ecg_id = 1999
  config.data.tfds_dir = 'data/tfds_ptbxl1999'
  config.vae.derived_limb_leads = True
  # About the squared error's size at the shipped VAE's reconstructions (361 against 4.7 x 75).
  config.vae.spectral_weight = 50.0
  config.vae.epochs = 25            # 1,275 steps of 32 on 1,650 ECGs (the shipped VAE: 1,260)
  config.vae.kl_anneal_epochs = 4   # about the shipped VAE's 210 annealing steps
  return config
