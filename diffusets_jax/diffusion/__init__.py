"""The noise schedule, the samplers (each one `lax.scan` ending in the VAE decode, guidance
inside), and the settings of one sampling run resolved from a request and a config."""
