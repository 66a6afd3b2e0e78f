"""The pretrained model shipped inside the package: the files beside this module, an exported
model (diffusets_jax/store/exported.py describes them). Open it with
`diffusets_jax.store.open_model('pretrained')`; rewrite it with

  python -m diffusets_jax.pretrained --export_from runs/pretrained
"""
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
