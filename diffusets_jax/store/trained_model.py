"""A trained model in memory: what sampling needs of it, whatever form it was stored in."""
import dataclasses

import ml_collections


@dataclasses.dataclass
class TrainedModel:
  config: ml_collections.ConfigDict
  vae_params: dict
  unet_params: dict           # the weights it samples with: the EMA where kept and asked for
  conditioning: dict          # text encoder, prompt template, fills for unknown age and sex
  time_tables: dict | None = None   # a converted reference U-Net's own frozen time tables,
                                    # {reference name: (1000, 64)}; None: recomputed
  source: str = ''            # where it was opened from, for messages and records
  unet_weights: str = 'params'      # 'ema' or 'params': which of the train state's weights
  unet_step: int = 0          # the diffusion training step of those weights
