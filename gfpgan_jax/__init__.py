"""gfpgan-jax: GFP-GAN blind face restoration in JAX/Flax, numerically matching the official weights."""
from gfpgan_jax.architecture import ModelConfig, build_model
from gfpgan_jax.restorer import FaceRestorer
from gfpgan_jax.weights import load_weights

__all__ = ['FaceRestorer', 'ModelConfig', 'build_model', 'load_weights']
__version__ = '0.1.0'
