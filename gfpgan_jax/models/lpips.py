"""The LPIPS v0.1 network (Zhang et al. 2018): torchvision's AlexNet or VGG16 features and the learned linear heads.

NHWC. The backbone's convolutions are named after torchvision's `features.<index>` keys (`backbone/features_3`),
the heads after lpips' `lin<k>.model.1` (`lin<k>`), so that the converter maps both files one to one. VGG16 is
the perceptual loss's extractor (models/vgg.py) without its input normalisation: LPIPS scales the input itself.
"""
import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models.layers import Dtype, conv, wide_dtype
from gfpgan_jax.models.vgg import VGGFeatureExtractor

NETS = ('alex', 'vgg')
# lpips' ScalingLayer: the ImageNet statistics of its [-1, 1] inputs.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
VGG16_TAPS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet `features` up to its fifth ReLU: the five ReLU outputs, which LPIPS compares."""
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        # The first conv (11x11, stride 4) has padding 2, not the kernel's half that `conv` gives.
        x = nn.relu(nn.Conv(64, (11, 11), strides=4, padding=((2, 2), (2, 2)), dtype=self.dtype,
                            name='features_0')(x))
        taps = [x]
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = nn.relu(conv(192, 5, 'features_3', self.dtype)(x))
        taps.append(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        for index, features in ((6, 384), (8, 256), (10, 256)):
            x = nn.relu(conv(features, 3, f'features_{index}', self.dtype)(x))
            taps.append(x)
        return taps


def _unit_channels(x):
    x = x.astype(wide_dtype(x.dtype))
    return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + NORM_EPS)


class LPIPSNet(nn.Module):
    """Two batches of RGB images in [-1, 1], (b, h, w, 3) each -> their LPIPS distances (b,). `net`: 'alex' or
    'vgg' (VGG16)."""
    net: str = 'alex'
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x0, x1):
        if self.net not in NETS:
            raise ValueError(f'LPIPS net must be one of {NETS}, not {self.net!r}')
        # Both batches in one pass, so the backbone's weights are read once.
        scaled = ((jnp.concatenate([x0, x1]) - jnp.array(SHIFT)) / jnp.array(SCALE)).astype(self.dtype)
        if self.net == 'alex':
            taps = AlexNetFeatures(self.dtype, name='backbone')(scaled)
        else:
            features = VGGFeatureExtractor(VGG16_TAPS, 'vgg16', use_input_norm=False, dtype=self.dtype,
                                           name='backbone')(scaled)
            taps = [features[name] for name in VGG16_TAPS]
        distance = 0
        for k, features in enumerate(taps):
            f0, f1 = jnp.split(_unit_channels(features), 2)
            head = nn.Conv(1, (1, 1), use_bias=False, dtype=self.dtype, name=f'lin{k}')
            distance = distance + jnp.mean(head((f0 - f1) ** 2).astype(wide_dtype(self.dtype)), axis=(1, 2, 3))
        return distance
