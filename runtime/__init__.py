"""Light on-device inference; imports neither torch nor transformers."""
