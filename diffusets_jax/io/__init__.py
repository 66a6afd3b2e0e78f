"""ECGs out: WFDB and NPZ files, and plots (ECG paper, training curves)."""
