"""Identity distance ("Deg." in the GFPGAN paper): the angle, in degrees, between the ArcFace embeddings of a
restored face and of its ground truth (0 for the same person seen the same way; lower is better).

The faces go to ArcFace as GFPGAN's identity loss gives them: RGB in [-1, 1] to grey (0.2989 R + 0.5870 G +
0.1140 B), resized to 128x128 with torch's bilinear `align_corners=False` (no antialiasing). The network is
GFPGAN's ResNetArcFace, arcface_resnet18.pth.

>>> identity = IdentityDistance.from_pretrained()   # arcface_resnet18.pth, fetched once
>>> degrees = identity(restored, gt)                 # (b, h, w, 3) RGB in [0, 255] each -> (b,)
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.convert.arcface import convert_arcface, detect_arcface
from gfpgan_jax.convert.pretrained import load_arcface
from gfpgan_jax.evaluation.pixel import check_pair
from gfpgan_jax.evaluation.resize import resize_bilinear
from gfpgan_jax.models.arcface import INPUT_SIZE, ResNetArcFace

GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def arcface_input(images):
    """RGB (b, h, w, 3) in [0, 255] -> (b, 128, 128, 1) grey in [-1, 1], as GFPGAN's `gray_resize_for_identity`
    sees its [-1, 1] images."""
    images = (images.astype(jnp.float32) / 255 - 0.5) / 0.5
    grey = sum(weight * images[..., channel] for channel, weight in enumerate(GREY_WEIGHTS))
    return resize_bilinear(grey[..., None], (INPUT_SIZE, INPUT_SIZE))


def angle_degrees(u, v):
    """Angle between the rows of `u` and `v` (b, d), in degrees: 2 atan2(|u' - v'|, |u' + v'|) of the unit
    vectors, which stays accurate near 0, where arccos of the cosine loses half its digits."""
    u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    return jnp.degrees(2 * jnp.arctan2(jnp.linalg.norm(u - v, axis=-1), jnp.linalg.norm(u + v, axis=-1)))


# Jitted on the (hashable) module, so that instances with the same network share compiled programs.
@functools.partial(jax.jit, static_argnames='model')
def _embeddings(model, variables, images):
    return model.apply(variables, arcface_input(images))


@functools.partial(jax.jit, static_argnames='model')
def _angles(model, variables, images, references):
    # One pass over both batches, so that the weights are read once.
    both = model.apply(variables, arcface_input(jnp.concatenate([images, references])))
    return angle_degrees(*jnp.split(both, 2))


class IdentityDistance:
    """ArcFace with its weights: two batches of RGB faces (b, h, w, 3) in [0, 255] -> (b,) angles in degrees,
    compiled once per input shape."""

    def __init__(self, variables, model=ResNetArcFace()):
        self.model = model
        self.variables = jax.device_put(variables)

    @classmethod
    def from_state_dict(cls, state, dtype=jnp.float32):
        """From a ResNetArcFace state dict ({key: numpy array}); its blocks per stage are read from the keys."""
        model = detect_arcface(state, dtype=dtype)
        return cls(convert_arcface(state, model), model)

    @classmethod
    def from_checkpoint(cls, path, dtype=jnp.float32):
        """From an official .pth (read without torch; a DataParallel `module.` prefix is dropped, as basicsr's
        loader does)."""
        model, variables = load_arcface(path, dtype=dtype)
        return cls(variables, model)

    @classmethod
    def from_pretrained(cls, dtype=jnp.float32):
        """GFPGAN's arcface_resnet18.pth, downloaded into the cache on first use."""
        return cls.from_checkpoint(None, dtype)

    def embeddings(self, images):
        """(b, 512) ArcFace embeddings of RGB faces (b, h, w, 3) in [0, 255]."""
        _check_faces(images)
        return _embeddings(self.model, self.variables, jnp.asarray(images))

    def __call__(self, images, references):
        """(b,) angles in degrees between the embeddings of `images` and `references`."""
        check_pair(images, references)
        _check_faces(images)
        return _angles(self.model, self.variables, jnp.asarray(images), jnp.asarray(references))


def _check_faces(images):
    if np.ndim(images) != 4 or np.shape(images)[-1] != 3:
        raise ValueError(f'identity distance needs RGB faces (b, h, w, 3), got shape {np.shape(images)}')
