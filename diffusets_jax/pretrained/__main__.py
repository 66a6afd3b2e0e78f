"""python -m diffusets_jax.pretrained --export_from WORKDIR: see the package docstring."""
from diffusets_jax.pretrained import main

main()
