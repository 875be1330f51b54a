"""GFPGAN training in JAX: the official objective, optimizers and training step."""
