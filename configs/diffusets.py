"""The paper-size DiffuSETS: reference VAE and U-Net, ada-002-width text (1536-d).

The hashing encoder stands in at 1536-d until a real text encoder is configured; with it the
model has exactly the reference's shapes.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.text.dim = 1536
  return config
