"""The networks, as pure Linen modules: the 1-D VAE, the conditional 1-D U-Net, the CLIP-style
ECG-text model that scores generated ECGs, their shared layers, and `factory` (build and
initialise each from a config)."""
