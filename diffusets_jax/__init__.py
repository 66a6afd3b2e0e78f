"""diffusets-jax: DiffuSETS (text- and patient-conditioned 12-lead ECG generation) in JAX/Flax.

Layers, bottom first (imports only go down; tests/test_structure.py checks it):
- models, diffusion, conditioning, datasets, io, conversion, config_schema, batching;
- store (a trained model on disk, in any of its forms) and train_state (the train states);
- training, generate (sampling) and evaluation;
- the command lines: train.py, sample.py, evaluate.py, convert, pretrained.
"""
