"""basicsr's VGGFeatureExtractor: named intermediate features of torchvision's VGG, for perceptual and style
losses.

Only the layers up to the last requested one are built. Convs are named after their index in torchvision's
`features` (`features.34` is `features_34`), so that `gfpgan_jax.convert.vgg` maps vgg19-dcbb9e9d.pth one to one;
outputs are keyed by basicsr's layer names (`conv5_4`: the 4th conv of block 5, before its ReLU). The weights
are not trained here (basicsr's `requires_grad`): an optimizer simply leaves them out.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.models.layers import Dtype, conv

# Convs per block of torchvision's configurations; block widths are shared.
VGG_BLOCKS = {'vgg11': (1, 1, 2, 2, 2), 'vgg13': (2, 2, 2, 2, 2), 'vgg16': (2, 2, 3, 3, 3),
              'vgg19': (2, 2, 4, 4, 4)}
VGG_WIDTHS = (64, 128, 256, 512, 512)
# torchvision's ImageNet statistics, for images in [0, 1]; fp32 as basicsr's buffers, so fp64 matches them too.
IMAGENET_MEAN = np.float32([0.485, 0.456, 0.406])
IMAGENET_STD = np.float32([0.229, 0.224, 0.225])


def vgg_layer_names(vgg_type='vgg19'):
    """basicsr's names of the layers of torchvision's `features` of `vgg_type`, in order (index = position)."""
    if vgg_type not in VGG_BLOCKS:
        raise ValueError(f'vgg_type must be one of {sorted(VGG_BLOCKS)}, got {vgg_type!r}')
    names = []
    for block, convs in enumerate(VGG_BLOCKS[vgg_type], start=1):
        for index in range(1, convs + 1):
            names += [f'conv{block}_{index}', f'relu{block}_{index}']
        names.append(f'pool{block}')
    return tuple(names)


def _block_width(name):
    return VGG_WIDTHS[int(name[len('conv')]) - 1]


class VGGFeatureExtractor(nn.Module):
    """Images (b, h, w, 3) -> {layer name: (b, h', w', c) features} for each name in `layer_name_list`.

    `range_norm` maps inputs from [-1, 1] to [0, 1] first; `use_input_norm` then normalises them with ImageNet's
    mean and std. `remove_pooling` drops the max pools (their names give no output then); `pooling_stride` is
    the stride of the 2x2 max pools.
    """
    layer_name_list: Sequence[str]
    vgg_type: str = 'vgg19'
    use_input_norm: bool = True
    range_norm: bool = False
    remove_pooling: bool = False
    pooling_stride: int = 2
    dtype: Dtype = jnp.float32

    def layers_built(self):
        """The names of the layers this extractor runs: torchvision's, up to the last requested one."""
        names = vgg_layer_names(self.vgg_type)
        unknown = [name for name in self.layer_name_list if name not in names]
        if unknown or not self.layer_name_list:
            raise ValueError(f'layer_name_list must name layers of {self.vgg_type} ({", ".join(names)}); '
                             f'got {list(self.layer_name_list)}')
        return names[:max(names.index(name) for name in self.layer_name_list) + 1]

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f'VGGFeatureExtractor takes NHWC RGB images (b, h, w, 3), got shape {tuple(x.shape)}')
        x = x.astype(self.dtype)
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - IMAGENET_MEAN.astype(self.dtype)) / IMAGENET_STD.astype(self.dtype)
        features = {}
        for index, name in enumerate(self.layers_built()):
            if name.startswith('conv'):
                x = conv(_block_width(name), 3, f'features_{index}', self.dtype)(x)
            elif name.startswith('relu'):
                x = nn.relu(x)
            elif self.remove_pooling:
                continue
            else:
                x = nn.max_pool(x, (2, 2), strides=(self.pooling_stride,) * 2)
            if name in self.layer_name_list:
                features[name] = x
        return features
