"""Training: patch data, losses and the training loop."""
