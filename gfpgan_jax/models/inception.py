"""The InceptionV3 of FID (pytorch-fid's, with TensorFlow's pooling quirks) up to its 2048-d pool3 features.

NHWC, with modules named after the torch state-dict keys (`Mixed_5b.branch1x1.conv` is `Mixed_5b/branch1x1/conv`),
so that `gfpgan_jax.convert.strict.convert` maps pt_inception-2015-12-05-6726825d.pth one to one. The network
differs from torchvision's InceptionV3 as the TensorFlow graph the FID weights come from does: the average pools
inside the A, C and E blocks leave the zero padding out of their means, and the last E block max-pools instead.
"""
import functools

import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models.layers import Dtype, wide_dtype

BN_EPS = 1e-3
FEATURES = 2048


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


class BasicConv2d(nn.Module):
    """Conv without bias, BatchNorm, ReLU; `padding` per axis, as torch's Conv2d takes it."""
    features: int
    kernel_size: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        pad_h, pad_w = _pair(self.padding)
        x = nn.Conv(self.features, _pair(self.kernel_size), strides=self.stride,
                    padding=((pad_h, pad_h), (pad_w, pad_w)), use_bias=False, dtype=self.dtype, name='conv')(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=self.dtype, name='bn')(x)
        return nn.relu(x)


def _mean_pool_3x3(x):
    """3x3 average over the pixels inside the image only (TensorFlow's SAME average pool)."""
    return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride_2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
    pool_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        block = functools.partial(BasicConv2d, dtype=self.dtype)
        branch1x1 = block(64, 1, name='branch1x1')(x)
        branch5x5 = block(64, 5, padding=2, name='branch5x5_2')(block(48, 1, name='branch5x5_1')(x))
        branch3x3dbl = block(64, 1, name='branch3x3dbl_1')(x)
        branch3x3dbl = block(96, 3, padding=1, name='branch3x3dbl_2')(branch3x3dbl)
        branch3x3dbl = block(96, 3, padding=1, name='branch3x3dbl_3')(branch3x3dbl)
        branch_pool = block(self.pool_features, 1, name='branch_pool')(_mean_pool_3x3(x))
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        block = functools.partial(BasicConv2d, dtype=self.dtype)
        branch3x3 = block(384, 3, stride=2, name='branch3x3')(x)
        branch3x3dbl = block(64, 1, name='branch3x3dbl_1')(x)
        branch3x3dbl = block(96, 3, padding=1, name='branch3x3dbl_2')(branch3x3dbl)
        branch3x3dbl = block(96, 3, stride=2, name='branch3x3dbl_3')(branch3x3dbl)
        return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        block = functools.partial(BasicConv2d, dtype=self.dtype)
        c7 = self.channels_7x7
        branch1x1 = block(192, 1, name='branch1x1')(x)
        branch7x7 = block(c7, 1, name='branch7x7_1')(x)
        branch7x7 = block(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(branch7x7)
        branch7x7 = block(192, (7, 1), padding=(3, 0), name='branch7x7_3')(branch7x7)
        branch7x7dbl = block(c7, 1, name='branch7x7dbl_1')(x)
        branch7x7dbl = block(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(branch7x7dbl)
        branch7x7dbl = block(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(branch7x7dbl)
        branch7x7dbl = block(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(branch7x7dbl)
        branch7x7dbl = block(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(branch7x7dbl)
        branch_pool = block(192, 1, name='branch_pool')(_mean_pool_3x3(x))
        return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        block = functools.partial(BasicConv2d, dtype=self.dtype)
        branch3x3 = block(320, 3, stride=2, name='branch3x3_2')(block(192, 1, name='branch3x3_1')(x))
        branch7x7x3 = block(192, 1, name='branch7x7x3_1')(x)
        branch7x7x3 = block(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(branch7x7x3)
        branch7x7x3 = block(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(branch7x7x3)
        branch7x7x3 = block(192, 3, stride=2, name='branch7x7x3_4')(branch7x7x3)
        return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionE(nn.Module):
    """`max_pool`: the pool branch takes the 3x3 maximum (FID's last E block) rather than the mean."""
    max_pool: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        block = functools.partial(BasicConv2d, dtype=self.dtype)

        def split_1x3_3x1(y, prefix):
            return jnp.concatenate([block(384, (1, 3), padding=(0, 1), name=f'{prefix}a')(y),
                                    block(384, (3, 1), padding=(1, 0), name=f'{prefix}b')(y)], axis=-1)

        branch1x1 = block(320, 1, name='branch1x1')(x)
        branch3x3 = split_1x3_3x1(block(384, 1, name='branch3x3_1')(x), 'branch3x3_2')
        branch3x3dbl = block(384, 3, padding=1, name='branch3x3dbl_2')(block(448, 1, name='branch3x3dbl_1')(x))
        branch3x3dbl = split_1x3_3x1(branch3x3dbl, 'branch3x3dbl_3')
        pooled = (nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1))) if self.max_pool else _mean_pool_3x3(x))
        branch_pool = block(192, 1, name='branch_pool')(pooled)
        return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
    """(b, 299, 299, 3) RGB in [-1, 1] -> (b, 2048) pool3 features (pytorch-fid's InceptionV3 block 3, without its
    resize and normalisation: see gfpgan_jax.evaluation.fid for those)."""
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        block = functools.partial(BasicConv2d, dtype=self.dtype)
        x = block(32, 3, stride=2, name='Conv2d_1a_3x3')(x)
        x = block(32, 3, name='Conv2d_2a_3x3')(x)
        x = block(64, 3, padding=1, name='Conv2d_2b_3x3')(x)
        x = _max_pool_3x3_stride_2(x)
        x = block(80, 1, name='Conv2d_3b_1x1')(x)
        x = block(192, 3, name='Conv2d_4a_3x3')(x)
        x = _max_pool_3x3_stride_2(x)
        for name, pool_features in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
            x = InceptionA(pool_features, dtype=self.dtype, name=name)(x)
        x = InceptionB(dtype=self.dtype, name='Mixed_6a')(x)
        for name, channels_7x7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
            x = InceptionC(channels_7x7, dtype=self.dtype, name=name)(x)
        x = InceptionD(dtype=self.dtype, name='Mixed_7a')(x)
        x = InceptionE(dtype=self.dtype, name='Mixed_7b')(x)
        x = InceptionE(max_pool=True, dtype=self.dtype, name='Mixed_7c')(x)
        return jnp.mean(x.astype(wide_dtype(self.dtype)), axis=(1, 2))
