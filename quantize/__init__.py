"""Quantization and pruning stage."""
