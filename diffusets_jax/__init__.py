"""diffusets-jax: DiffuSETS (text- and patient-conditioned 12-lead ECG generation) in JAX/Flax."""
