"""Distillation stage: teacher fine-tune/import, students, losses, augmentation, training loop."""
