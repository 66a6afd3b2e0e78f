"""Every config field with its default. The schema lives in the package
(diffusets_jax/config_schema.py), so that the library validates and fills configs without this
folder; the configs here override it."""
from diffusets_jax.config_schema import get_config  # noqa: F401  (the config file's entry point)
