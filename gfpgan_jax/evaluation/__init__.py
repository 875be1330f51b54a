"""The GFPGAN paper's evaluation, each metric equal to the implementation the field reports with: PSNR, SSIM and
NIQE as basicsr computes them, LPIPS as the lpips package, FID as pytorch-fid, and the identity distance ("Deg.")
with GFPGAN's ArcFace. Images are RGB NHWC batches in [0, 255]; see each module for the details."""
from gfpgan_jax.evaluation.fid import FIDStatistics, InceptionFeatures, frechet_distance
from gfpgan_jax.evaluation.folders import METRICS, Evaluator
from gfpgan_jax.evaluation.identity import IdentityDistance
from gfpgan_jax.evaluation.lpips import LPIPS
from gfpgan_jax.evaluation.niqe import niqe
from gfpgan_jax.evaluation.pixel import psnr, ssim

__all__ = ['METRICS', 'Evaluator', 'FIDStatistics', 'IdentityDistance', 'InceptionFeatures', 'LPIPS',
           'frechet_distance', 'niqe', 'psnr', 'ssim']
