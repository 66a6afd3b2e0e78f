"""Real ECGs in: the TFDS builders (LUDB, PTB-XL, MIMIC-IV-ECG), WFDB reading, preprocessing
to 12 x 1024 mV, the heart-rate detector, augmented training copies, and the input pipeline."""
