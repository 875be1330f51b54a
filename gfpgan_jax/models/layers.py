"""What every network here shares: the compute-dtype type, the leaky-ReLU slope, and the zero-padded conv of torch."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any
# Every leaky ReLU of GFPGAN, StyleGAN2, Real-ESRGAN and ParseNet has this slope (RetinaFace's vary, see there).
LEAKY_SLOPE = 0.2


def wide_dtype(dtype):
    """Where style codes, images and other outputs live: at least fp32 (bf16 compute keeps them fp32, fp64 stays
    fp64)."""
    return jnp.promote_types(dtype, jnp.float32)


def conv(features, kernel_size, name, dtype, *, stride=1, groups=1, use_bias=True):
    """torch's `nn.Conv2d(..., padding=kernel_size // 2)`: the same zeros on every side, whatever the stride (flax's
    'SAME' pads the bottom and right more for even strides)."""
    pad = kernel_size // 2
    return nn.Conv(features, (kernel_size, kernel_size), strides=stride, padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, use_bias=use_bias, dtype=dtype, name=name)
