"""RetinaFace, the face detector of the official whole-image pipeline (facexlib's ResNet-50 and MobileNet-0.25).

NHWC, with modules named after the torch state-dict keys (`body.layer2.0.conv1` is `body/layer2_0/conv1`, and a
torch `nn.Sequential` of conv and BatchNorm at `fpn.output1` is `fpn/output1_0` and `fpn/output1_1`), so that
`gfpgan_jax.convert.strict.convert` maps the checkpoints one to one.
"""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.models.layers import Dtype, conv

BN_EPS = 1e-5
ANCHORS_PER_PIXEL = 2
# Channels of the FPN's outputs, and so of the SSH modules and the heads.
FPN_CHANNELS = {'resnet50': 256, 'mobile0.25': 64}
# (blocks, bottleneck width, stride of the first block) of torchvision's resnet50 stages layer1..layer4.
RESNET50_STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
# (output channels, stride) of the depthwise-separable blocks of MobileNetV1 0.25; stage1 opens with a plain conv.
MOBILENET_STAGES = {
    'stage1': ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)),
    'stage2': ((128, 2), (128, 1), (128, 1), (128, 1), (128, 1), (128, 1)),
    'stage3': ((256, 2), (256, 1)),
}
MOBILENET_STEM = 8


def _conv(features, kernel_size, name, dtype, stride=1, groups=1, use_bias=False):
    return conv(features, kernel_size, name, dtype, stride=stride, groups=groups, use_bias=use_bias)


def _bn(name, dtype):
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=dtype, name=name)


def conv_bn(x, features, kernel_size, name, dtype, stride=1, leaky=None):
    """facexlib's conv-BatchNorm(-LeakyReLU) `nn.Sequential` at `name`, built inside the calling module."""
    x = _bn(f'{name}_1', dtype)(_conv(features, kernel_size, f'{name}_0', dtype, stride)(x))
    return x if leaky is None else nn.leaky_relu(x, leaky)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3 conv)."""
    width: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out_channels = 4 * self.width
        out = nn.relu(_bn('bn1', self.dtype)(_conv(self.width, 1, 'conv1', self.dtype)(x)))
        out = nn.relu(_bn('bn2', self.dtype)(_conv(self.width, 3, 'conv2', self.dtype, self.stride)(out)))
        out = _bn('bn3', self.dtype)(_conv(out_channels, 1, 'conv3', self.dtype)(out))
        if self.stride != 1 or x.shape[-1] != out_channels:
            x = conv_bn(x, out_channels, 1, 'downsample', self.dtype, self.stride)
        return nn.relu(out + x)


class ResNet50(nn.Module):
    """torchvision's resnet50 up to layer4; returns the outputs of layer2, layer3 and layer4."""
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(_bn('bn1', self.dtype)(_conv(64, 7, 'conv1', self.dtype, stride=2)(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        features = []
        for layer, (blocks, width, stride) in enumerate(RESNET50_STAGES, 1):
            for block in range(blocks):
                x = Bottleneck(width, stride if block == 0 else 1, self.dtype, name=f'layer{layer}_{block}')(x)
            features.append(x)
        return features[1:]


class MobileNetV1(nn.Module):
    """facexlib's MobileNetV1 0.25 without its classifier; returns the outputs of its three stages."""
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = conv_bn(x, MOBILENET_STEM, 3, 'stage1_0', self.dtype, stride=2, leaky=0.1)
        features = []
        for stage, blocks in MOBILENET_STAGES.items():
            first = 1 if stage == 'stage1' else 0  # the stem is stage1's block 0
            for index, (channels, stride) in enumerate(blocks, first):
                name = f'{stage}_{index}'
                # Sequential indices 0, 1 (depthwise conv, BN), 2 (activation), 3, 4 (pointwise conv, BN).
                x = _bn(f'{name}_1', self.dtype)(
                    _conv(x.shape[-1], 3, f'{name}_0', self.dtype, stride, groups=x.shape[-1])(x))
                x = nn.leaky_relu(x, 0.1)
                x = _bn(f'{name}_4', self.dtype)(_conv(channels, 1, f'{name}_3', self.dtype)(x))
                x = nn.leaky_relu(x, 0.1)
            features.append(x)
        return features


def resize_nearest(x, height, width):
    """`F.interpolate(x, size=(height, width), mode='nearest')`, whose source index is floor(i * in / out) in
    float32 arithmetic."""
    def source_indices(size_in, size_out):
        scale = np.float32(size_in) / np.float32(size_out)
        return np.minimum(np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int64), size_in - 1)

    x = jnp.take(x, source_indices(x.shape[1], height), axis=1)
    return jnp.take(x, source_indices(x.shape[2], width), axis=2)


def _leaky_slope(channels):
    # facexlib uses leaky activations only in its narrow (MobileNet) variant.
    return 0.1 if channels <= 64 else 0.0


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral convs, each coarser level upsampled (nearest) into the finer, then 3x3 merges."""
    channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, features):
        leaky = _leaky_slope(self.channels)
        out1, out2, out3 = (conv_bn(f, self.channels, 1, f'output{i}', self.dtype, leaky=leaky)
                            for i, f in enumerate(features, 1))
        out2 = conv_bn(out2 + resize_nearest(out3, *out2.shape[1:3]), self.channels, 3, 'merge2', self.dtype,
                       leaky=leaky)
        out1 = conv_bn(out1 + resize_nearest(out2, *out1.shape[1:3]), self.channels, 3, 'merge1', self.dtype,
                       leaky=leaky)
        return out1, out2, out3


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields (stacked 3x3 convs), concatenated."""
    channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        leaky, quarter, dtype = _leaky_slope(self.channels), self.channels // 4, self.dtype
        branch3 = conv_bn(x, self.channels // 2, 3, 'conv3X3', dtype)
        shared = conv_bn(x, quarter, 3, 'conv5X5_1', dtype, leaky=leaky)
        branch5 = conv_bn(shared, quarter, 3, 'conv5X5_2', dtype)
        branch7 = conv_bn(conv_bn(shared, quarter, 3, 'conv7X7_2', dtype, leaky=leaky), quarter, 3, 'conv7x7_3', dtype)
        return nn.relu(jnp.concatenate([branch3, branch5, branch7], axis=-1))


class Head(nn.Module):
    """1x1 conv predicting `values` numbers per anchor; (b, h * w * anchors, values), anchors fastest."""
    values: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = _conv(ANCHORS_PER_PIXEL * self.values, 1, 'conv1x1', self.dtype, use_bias=True)(x)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """facexlib's RetinaFace in its test phase. `backbone`: 'resnet50' or 'mobile0.25'.

    Input (b, h, w, 3): BGR pixels in [0, 255] less the mean (104, 117, 123). Returns float32 box offsets
    (b, n, 4), class probabilities (b, n, 2) (column 1: face) and landmark offsets (b, n, 10) for the n prior boxes
    of `gfpgan_jax.inference.detection.prior_boxes`.
    """
    backbone: str = 'resnet50'
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.backbone not in FPN_CHANNELS:
            raise ValueError(f'unknown RetinaFace backbone {self.backbone!r}; expected one of '
                             f'{", ".join(FPN_CHANNELS)}')
        body = ResNet50 if self.backbone == 'resnet50' else MobileNetV1
        channels = FPN_CHANNELS[self.backbone]
        features = FPN(channels, self.dtype, name='fpn')(body(self.dtype, name='body')(x.astype(self.dtype)))
        features = [SSH(channels, self.dtype, name=f'ssh{i}')(f) for i, f in enumerate(features, 1)]

        def head(kind, values):
            out = [Head(values, self.dtype, name=f'{kind}_{i}')(f) for i, f in enumerate(features)]
            return jnp.concatenate(out, axis=1).astype(jnp.float32)

        boxes, logits, landmarks = head('BboxHead', 4), head('ClassHead', 2), head('LandmarkHead', 10)
        return boxes, nn.softmax(logits, axis=-1), landmarks
