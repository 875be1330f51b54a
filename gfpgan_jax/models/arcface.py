"""ArcFace (GFPGAN's ResNetArcFace, IRBlocks without squeeze-excitation): the face-identity embedding of GFPGAN's
identity loss.

As GFPGAN trains with it: frozen and in eval mode, so BatchNorm uses its running statistics and the dropout before
fc5 is the identity. NHWC; modules are named after the official state-dict keys (`layer1.0.bn0` is
`layer1_0/bn0`), so that `gfpgan_jax.convert.strict.convert` maps arcface_resnet18.pth one to one.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models.layers import Dtype, conv, wide_dtype
from gfpgan_jax.models.parsenet import PRELU_INIT

BN_EPS = 1e-5
INPUT_SIZE = 128  # fc5 takes the 8x8 map that 128x128 inputs leave after four halvings
EMBEDDING = 512
# (width, stride of the first block) of the stages layer1..layer4.
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


def _bn(name, dtype):
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=dtype, name=name)


class PReLU(nn.Module):
    """torch.nn.PReLU() as ArcFace builds it: one slope shared by all channels."""

    @nn.compact
    def __call__(self, x):
        slope = self.param('weight', nn.initializers.constant(PRELU_INIT), (1,))
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class IRBlock(nn.Module):
    """Improved residual block: BN, conv, BN, PReLU, conv (strided), BN, plus the shortcut, then the same PReLU
    (the official applies one module, so one slope, at both places)."""
    planes: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        prelu = PReLU(name='prelu')
        out = _bn('bn0', self.dtype)(x)
        out = prelu(_bn('bn1', self.dtype)(conv(x.shape[-1], 3, 'conv1', self.dtype, use_bias=False)(out)))
        out = conv(self.planes, 3, 'conv2', self.dtype, stride=self.stride, use_bias=False)(out)
        out = _bn('bn2', self.dtype)(out)
        if self.stride != 1 or x.shape[-1] != self.planes:
            x = conv(self.planes, 1, 'downsample_0', self.dtype, stride=self.stride, use_bias=False)(x)
            x = _bn('downsample_1', self.dtype)(x)
        return prelu(out + x)


class ResNetArcFace(nn.Module):
    """Greyscale faces (b, 128, 128, 1) -> identity embeddings (b, 512). `layers`: IRBlocks per stage
    ([2, 2, 2, 2] for arcface_resnet18.pth, the network GFPGAN trains with)."""
    layers: Sequence[int] = (2, 2, 2, 2)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 1):
            raise ValueError(f'ResNetArcFace takes greyscale faces (b, {INPUT_SIZE}, {INPUT_SIZE}, 1), '
                             f'got shape {tuple(x.shape)}')
        if len(self.layers) != len(STAGES):
            raise ValueError(f'layers gives the blocks of {len(STAGES)} stages, got {self.layers}')
        out = conv(64, 3, 'conv1', self.dtype, use_bias=False)(x)
        out = PReLU(name='prelu')(_bn('bn1', self.dtype)(out))
        out = nn.max_pool(out, (2, 2), strides=(2, 2))
        for stage, ((planes, stride), blocks) in enumerate(zip(STAGES, self.layers), start=1):
            for index in range(blocks):
                out = IRBlock(planes, stride if index == 0 else 1, self.dtype, name=f'layer{stage}_{index}')(out)
        out = _bn('bn4', self.dtype)(out)
        # The official's dropout comes here: the identity in eval mode, the only mode GFPGAN runs ArcFace in.
        # fc5's weights read the features in the official's NCHW flattening order.
        out = out.transpose(0, 3, 1, 2).reshape(out.shape[0], -1)
        out = nn.Dense(EMBEDDING, dtype=self.dtype, name='fc5')(out)
        return _bn('bn5', self.dtype)(out).astype(wide_dtype(self.dtype))
