"""The paper-size DiffuSETS: reference VAE and U-Net, conditioned on OpenAI ada-002 (1536-d).

Embedding the prompts needs OPENAI_API_KEY (once per distinct prompt; they are cached). Offline,
`--config.text.encoder=minilm` gives the same networks with a 384-d text condition.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.text.encoder = 'openai'
  config.text.model = 'text-embedding-ada-002'
  return config
