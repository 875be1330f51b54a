"""Flax networks of GFP-GAN: the clean (v1.2-v1.4) and original (v1) architectures."""
