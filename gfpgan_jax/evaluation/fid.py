"""FID (Heusel et al. 2017) as pytorch-fid 0.3.0 computes it: pool3 features of its TensorFlow-ported InceptionV3,
their mean and covariance, and the Frechet distance between two such Gaussians.

>>> inception = InceptionFeatures.from_pretrained()        # pt_inception-2015-12-05-6726825d.pth, fetched once
>>> reference = FIDStatistics.of(np.concatenate([inception(batch) for batch in gt_batches]))
>>> reference.save('celeba_test_512.npz')                    # pytorch-fid's stats layout: mu, sigma
>>> restored = FIDStatistics.of(np.concatenate([inception(batch) for batch in restored_batches]))
>>> fid = frechet_distance(restored, FIDStatistics.load('celeba_test_512.npz'))

The features are computed batched on the device; the statistics and the matrix square root run on the host in
float64 (scipy's `sqrtm`), as pytorch-fid does.
"""
import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from gfpgan_jax.convert.inception import INPUT_SIZE, convert_inception
from gfpgan_jax.evaluation.pixel import check_batch
from gfpgan_jax.evaluation.resize import resize_bilinear
from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.inference.loading import FromOfficialWeights
from gfpgan_jax.models.inception import FIDInceptionV3

SINGULAR_EPS = 1e-6
IMAGINARY_ATOL = 1e-3


def inception_input(images):
    """uint8 RGB (b, h, w, 3) in [0, 255] -> the network's input as pytorch-fid makes it: scaled to [0, 1],
    resized to 299x299 (bilinear, align_corners=False, no antialiasing), then mapped to [-1, 1]."""
    images = images.astype(jnp.float32) / 255
    if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        images = resize_bilinear(images, (INPUT_SIZE, INPUT_SIZE))
    return 2 * images - 1


@functools.partial(jax.jit, static_argnames='model')
def _features(model, variables, images):
    # Jitted on the (hashable) module, so that instances with the same network share compiled programs.
    return model.apply(variables, inception_input(images))


class InceptionFeatures(FromOfficialWeights):
    """pytorch-fid's InceptionV3 with its weights: (b, h, w, 3) RGB images in [0, 255] -> (b, 2048) pool3
    features, compiled once per input shape. The official file is pt_inception-2015-12-05-6726825d.pth."""
    RELEASE = 'pt_inception-2015-12-05-6726825d'

    def __init__(self, variables, model=FIDInceptionV3()):
        self.model = model
        self.variables = jax.device_put(variables)

    @classmethod
    def from_state_dict(cls, state, model=FIDInceptionV3()):
        return cls(convert_inception(state, model), model)

    def __call__(self, images):
        """(b, 2048) float32 features of (b, h, w, 3) RGB images in [0, 255] (uint8 or float), on the device."""
        images = check_batch(images)
        if np.shape(images)[-1] != 3:
            raise ValueError(f'FID needs RGB images (b, h, w, 3), got shape {np.shape(images)}')
        return _features(self.model, self.variables, jnp.asarray(images))


@dataclasses.dataclass(frozen=True)
class FIDStatistics:
    """Mean (2048,) and covariance (2048, 2048) of a set's pool3 features; saved as pytorch-fid saves them."""
    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def of(cls, features):
        """Statistics of (n, 2048) features, n >= 2: the mean in float32 and the covariance in float64, as
        pytorch-fid's numpy calls give them."""
        features = np.asarray(features, np.float32)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f'FID statistics need features of at least two images, got shape {features.shape}')
        return cls(np.mean(features, axis=0), np.cov(features, rowvar=False))

    def save(self, path):
        """An .npz with arrays `mu` and `sigma` (pytorch-fid's --save-stats layout)."""
        with atomic_write(path) as tmp, open(tmp, 'wb') as f:
            np.savez_compressed(f, mu=self.mu, sigma=self.sigma)

    @classmethod
    def load(cls, path):
        """From an .npz with `mu` and `sigma` (ours, or pytorch-fid's)."""
        try:
            with np.load(path) as stats:
                return cls(stats['mu'], stats['sigma'])
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f'{path}: not FID statistics (an .npz with mu and sigma): {error}') from None


def frechet_distance(first, second, eps=SINGULAR_EPS):
    """The Frechet distance between the Gaussians of two `FIDStatistics`, as pytorch-fid's
    `calculate_frechet_distance`: should the product of the covariances have no finite square root, `eps` is
    added to both diagonals; an imaginary part from rounding is dropped, a large one raises ValueError."""
    mu1, mu2 = np.atleast_1d(first.mu), np.atleast_1d(second.mu)
    sigma1, sigma2 = np.atleast_2d(first.sigma), np.atleast_2d(second.sigma)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f'FID statistics of different dimensions: {mu1.shape} and {mu2.shape}')
    difference = mu1 - mu2
    root = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(root).all():
        warnings.warn(f'the product of the covariances is singular; adding {eps} to their diagonals', stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        root = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=IMAGINARY_ATOL):
            raise ValueError(f'FID: imaginary component {np.max(np.abs(root.imag))} in the covariance square root')
        root = root.real
    return float(difference.dot(difference) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))
