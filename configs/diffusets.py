"""The paper-size DiffuSETS: reference VAE and U-Net, conditioned on OpenAI ada-002 (1536-d).

Embedding the prompts needs OPENAI_API_KEY (once per distinct prompt; they are cached). Offline,
`--config.text.encoder=minilm` gives the same networks with a 384-d text condition.
"""
from diffusets_jax.config_schema import reference_config


def get_config():
  return reference_config()
