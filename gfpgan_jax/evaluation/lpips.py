"""LPIPS v0.1 (lower is more alike), as the lpips 0.1.4 package computes it and basicsr's calculate_lpips.py
feeds it: RGB images in [0, 255] scaled to [-1, 1], VGG16 (the default here, as there) or AlexNet features.

>>> lpips = LPIPS.from_pretrained('vgg')   # vgg16-397923af.pth and lpips' vgg.pth, fetched once
>>> distances = lpips(restored, gt)         # (b, h, w, 3) each -> (b,)
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.convert.lpips import convert_lpips
from gfpgan_jax.evaluation.pixel import check_pair
from gfpgan_jax.files.pth import load_pth, select_state_dict
from gfpgan_jax.files.releases import helper_weights_path
from gfpgan_jax.models.lpips import NETS, LPIPSNet

# The official files: torchvision's ImageNet backbones and lpips' linear heads (keys of releases.HELPER_WEIGHTS).
BACKBONE_RELEASES = {'alex': 'alexnet-owt-7be5be79', 'vgg': 'vgg16-397923af'}
HEAD_RELEASES = {'alex': 'lpips_alex', 'vgg': 'lpips_vgg'}
# The smallest image side that leaves every compared layer at least one pixel.
MIN_SIZE = {'alex': 31, 'vgg': 16}


def lpips_input(images):
    """[0, 255] -> [-1, 1] float32, as basicsr's script normalises (x / 255 - 0.5) / 0.5."""
    return (images.astype(jnp.float32) / 255 - 0.5) / 0.5


@functools.partial(jax.jit, static_argnames='model')
def _distances(model, variables, images, references):
    # Jitted on the (hashable) module, so that instances with the same network share compiled programs.
    return model.apply(variables, lpips_input(images), lpips_input(references))


class LPIPS:
    """LPIPSNet with its weights: two batches of RGB images (b, h, w, 3) in [0, 255] -> (b,) distances, compiled
    once per input shape."""

    def __init__(self, variables, model=LPIPSNet('vgg')):
        self.model = model
        self.variables = jax.device_put(variables)

    @classmethod
    def from_state_dicts(cls, backbone_state, heads_state, net='vgg', dtype=jnp.float32):
        """From torchvision's backbone state dict and lpips' heads state dict ({key: numpy array})."""
        if net not in NETS:
            raise ValueError(f'LPIPS net must be one of {NETS}, not {net!r}')
        model = LPIPSNet(net, dtype)
        return cls(convert_lpips(backbone_state, heads_state, model), model)

    @classmethod
    def from_checkpoints(cls, backbone_path, heads_path, net='vgg', dtype=jnp.float32):
        """From the official files (read without torch): e.g. vgg16-397923af.pth and lpips/weights/v0.1/vgg.pth."""
        backbone = select_state_dict(load_pth(backbone_path), backbone_path)
        return cls.from_state_dicts(backbone, select_state_dict(load_pth(heads_path), heads_path), net, dtype)

    @classmethod
    def from_pretrained(cls, net='vgg', dtype=jnp.float32):
        """The official weights, downloaded into the cache on first use."""
        if net not in NETS:
            raise ValueError(f'LPIPS net must be one of {NETS}, not {net!r}')
        return cls.from_checkpoints(helper_weights_path(BACKBONE_RELEASES[net]),
                                    helper_weights_path(HEAD_RELEASES[net]), net, dtype)

    def __call__(self, images, references):
        """(b,) LPIPS distances between `images` and `references`, both RGB (b, h, w, 3) in [0, 255]."""
        check_pair(images, references)
        shape = np.shape(images)
        if shape[-1] != 3 or min(shape[1:3]) < MIN_SIZE[self.model.net]:
            raise ValueError(f'LPIPS ({self.model.net}) needs RGB images of at least {MIN_SIZE[self.model.net]} '
                             f'pixels a side, got shape {shape}')
        return _distances(self.model, self.variables, jnp.asarray(images), jnp.asarray(references))
