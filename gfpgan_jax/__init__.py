"""gfpgan-jax: GFP-GAN blind face restoration in JAX/Flax, numerically matching the official weights."""
from gfpgan_jax.files.weights import load_weights
from gfpgan_jax.inference.background import BackgroundUpsampler
from gfpgan_jax.inference.detection import FaceDetector
from gfpgan_jax.inference.parsing import FaceParser
from gfpgan_jax.inference.pipeline import ImageRestorer
from gfpgan_jax.inference.restorer import FaceRestorer
from gfpgan_jax.models.generator import build_model
from gfpgan_jax.models.options import ModelConfig

__all__ = ['BackgroundUpsampler', 'FaceDetector', 'FaceParser', 'FaceRestorer', 'ImageRestorer', 'ModelConfig',
           'build_model', 'load_weights']
__version__ = '0.1.0'
