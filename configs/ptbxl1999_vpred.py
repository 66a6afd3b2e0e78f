"""The shipped model fine-tuned on the 1,987 PTB-XL records into a v-prediction U-Net
(`diffusion.prediction = 'v'`): configs/ptbxl1999_finetune.py with the U-Net's output changed
from the noise to the velocity, longer and at a higher learning rate, since at high noise its
output must change from about the noise to about minus the clean latent.

  python train.py --config configs/ptbxl1999_vpred.py --workdir runs/ptbxl1999_vpred \\
      --config.data.manual_dir=/path/to/ptb-xl/1.0.3+

An experiment (docs/experiments/v_prediction.md), not the shipped model.
"""
from configs import ptbxl1999_finetune


def get_config():
  config = ptbxl1999_finetune.get_config()
  config.diffusion.prediction = 'v'
  config.diffusion.epochs = 160          # 4,125 steps of 64 on the 1,650 training latents
  config.diffusion.learning_rate = 3e-4
  return config
