"""The shipped U-Net's last training: the fine-tuning of configs/ptbxl1999_finetune.py with each
training record also prompted by one of its statements alone (diffusion.single_report_copies),
for twice the steps (docs/experiments/ptbxl1999_single_report.md).

  python train.py --config configs/ptbxl1999_single_report.py --workdir runs/ft_single_long \\
      --config.data.manual_dir=/path/to/ptb-xl/1.0.3+
  python -m diffusets_jax.pretrained --export_from runs/ft_single_long

The export takes the VAE of the model it started from (the shipped one) as stored there.
"""
from configs import ptbxl1999_finetune


def get_config():
  config = ptbxl1999_finetune.get_config()
  config.diffusion.single_report_copies = True
  # The copies double the training latents (1,649 -> 3,248): 120 epochs are 6000 steps of 64.
  config.diffusion.epochs = 120
  return config
