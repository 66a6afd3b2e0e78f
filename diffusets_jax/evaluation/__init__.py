"""Evaluation: the DiffuSETS protocol (`evaluator.py`) and its metrics, the CLIP features
it scores with, the report, and the diagnostics built on its output (beats, seed spread)."""
