"""Training: `stages.train_stages` runs the vae, latents, diffusion and clip stages in order,
each in its own module over the shared loop (`loop.py`); `steps.py` holds the pure train steps
and the one place they are pmapped."""
