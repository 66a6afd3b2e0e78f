"""The model store: the one owner of a trained model on disk, below training, generation and
evaluation.

- `loading.open_model(source)`: the shipped model, an exported folder, a training workdir or the
  authors' .pth pair, as a `TrainedModel` (parameters only); warm-start sources (init_from).
- `workdir`: a training workdir's files (config, orbax checkpoints, conditioning records,
  latents, metrics) and restoring them.
- `exported`: the safetensors folder form (the shipped model is one); `reference`: the authors'
  checkpoint layout, both ways; `files`: atomic writes.
"""
from diffusets_jax.store.loading import open_clip, open_model  # noqa: F401
from diffusets_jax.store.trained_model import TrainedModel  # noqa: F401
