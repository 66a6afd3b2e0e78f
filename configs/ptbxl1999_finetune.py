"""The shipped model fine-tuned on the 1,987 PTB-XL 1.0.3 records with ecg_id 1-1999 (folds 1-8:
1,490 records, plus LUDB's 160 training records), with the shipped VAE's latents.

  python train.py --config configs/ptbxl1999_finetune.py --workdir runs/ptbxl1999_finetune \\
      --config.data.manual_dir=/path/to/ptb-xl/1.0.3+

The manual dir is a PhysioNet download of PTB-XL 1.0.3 (the full one or only ids 1-1999: both
read the same records), then '+' and nothing for the bundled LUDB. The build goes to its own
`data.tfds_dir`, apart from the bundled 720-record subset's.
"""
from configs import pretrained_finetune


def get_config():
  config = pretrained_finetune.get_config()
  # A placeholder that fails with the download instructions until the folder is given.
  config.data.manual_dir = 'PTBXL_1_0_3_DIR+'
  config.data.ptbxl_max_ecg_id = 1999
  config.data.tfds_dir = 'data/tfds_ptbxl1999'
  config.diffusion.epochs = 120   # 3000 steps of 64 on the 1,650 training latents
  return config
