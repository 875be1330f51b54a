"""Parity of the background upsampler with the official basicsr 1.4.2 RRDBNet and realesrgan 0.3.0 RealESRGANer.

The networks are small (8 features, 2 blocks, growth 4) with random weights. Those keep the scale of the official
initialisation, which stays bounded even through 23 blocks (outputs within +-1.7), so the trunk needs no taming;
only the last conv is rescaled so that the outputs span [0, 1]. Tolerances (fp32, CPU, highest matmul precision):
a full-width RRDB block 1e-5 max abs, whole networks 1e-4 on outputs of order 1, and the uint8 images of
`enhance` within one level of the official's.
"""
import os
import subprocess
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import official  # noqa: F401  (before basicsr and realesrgan)
from basicsr.archs import rrdbnet_arch
from realesrgan.utils import RealESRGANer

from gfpgan_jax.convert.rrdbnet import convert_rrdbnet
from gfpgan_jax.inference.background import BackgroundUpsampler, tile_spans
from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.models import rrdbnet
from parity_utils import max_abs, nhwc, randomize, state_dict_numpy

LAYER_TOL = 1e-5
NET_TOL = 1e-4
SMALL = dict(num_feat=8, num_block=2, num_grow_ch=4)
PHOTO = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned', 'astronaut.png')


def official_rrdbnet(scale, seed=0, **options):
    torch.manual_seed(seed)  # randomize() keeps the scale of the initial weights, drawn from the global generator
    return randomize(rrdbnet_arch.RRDBNet(3, 3, scale=scale, **dict(SMALL, **options)), seed)


def spread_output(module, images):
    """Rescale conv_last so that on `images` (NCHW in [0, 1]) each output channel has mean 0.5 and std 0.25.

    Random weights give outputs within a few hundredths of a constant, which uint8 rounding would flatten; spread
    out, they span [0, 1] and a few percent of them clamp.
    """
    factor = rrdbnet.UNSHUFFLE_FACTORS[module.scale]
    height, width = images.shape[2] // factor * factor, images.shape[3] // factor * factor
    with torch.no_grad():
        out = module(images[:, :, :height, :width])
        gain = 0.25 / out.std(dim=(0, 2, 3))
        module.conv_last.weight.mul_(gain[:, None, None, None])
        module.conv_last.bias.copy_((module.conv_last.bias - out.mean(dim=(0, 2, 3))) * gain + 0.5)
    return module


def photo_crop(height, width):
    """A BGR crop of a real photo (the astronaut's face and suit), so that tiles see varied content."""
    return np.ascontiguousarray(cv2.imread(PHOTO)[100:100 + height, 150:150 + width])


def test_pixel_unshuffle_channel_order():
    x = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    for factor in (2, 4):
        np.testing.assert_array_equal(rrdbnet.pixel_unshuffle(nhwc(x), factor), nhwc(F.pixel_unshuffle(x, factor)))


def test_full_width_block():
    torch.manual_seed(3)
    block = randomize(rrdbnet_arch.RRDB(num_feat=64, num_grow_ch=32), seed=3)
    x = torch.randn(1, 64, 12, 10, generator=torch.Generator().manual_seed(3))
    ours = rrdbnet.RRDB(num_feat=64, num_grow_ch=32)
    variables = convert(state_dict_numpy(block), variable_shapes(ours, nhwc(x)))
    with torch.no_grad():
        expected = nhwc(block(x))
    assert np.abs(expected).max() > 1
    assert max_abs(expected, ours.apply(variables, nhwc(x))) < LAYER_TOL  # measured 2.4e-7 on outputs up to 5


@pytest.mark.parametrize('scale', [2, 4, 1])
def test_network_parity(scale):
    x = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(scale))
    module = spread_output(official_rrdbnet(scale, seed=scale), x)
    options, variables = convert_rrdbnet({'params_ema': state_dict_numpy(module)})
    assert options == dict(num_in_ch=3, num_out_ch=3, scale=scale, **SMALL)
    with torch.no_grad():
        expected = nhwc(module(x))
    ours = jax.jit(rrdbnet.RRDBNet(**options).apply)(variables, nhwc(x))
    assert ours.shape == (2, 16 * scale, 20 * scale, 3)
    assert max_abs(expected, ours) < NET_TOL  # measured at most 9.6e-7 on outputs up to 2.5


def official_checkpoint(tmp_path, scale, image, seed=0):
    """A saved checkpoint of a small random RRDBNet whose output spreads over [0, 1] on the BGR `image`, and the
    official module holding it."""
    rgb = torch.from_numpy(image[..., 2::-1].transpose(2, 0, 1) / np.float32(255))[None]
    module = spread_output(official_rrdbnet(scale, seed), rgb)
    path = tmp_path / f'x{scale}.pth'
    torch.save({'params_ema': module.state_dict()}, path)
    return path, module


def official_enhance(path, module, image, outscale, **tiling):
    upsampler = RealESRGANer(module.scale, str(path), model=module, half=False, device=torch.device('cpu'),
                             **tiling)
    return upsampler.enhance(image, outscale=outscale)[0]


def assert_same_image(expected, ours):
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    assert np.abs(expected.astype(np.int64) - ours).max() <= 1  # measured: 1, on at most 0.04% of the values
    assert np.ptp(expected) > np.iinfo(expected.dtype).max // 3  # not flat: the comparison says something


@pytest.mark.parametrize('scale, size, tiling, outscale', [
    (2, (150, 200), dict(tile=64, tile_pad=10, pre_pad=0), 2),  # 3 x 4 tiles, narrow last row and column
    (2, (150, 200), dict(tile=0, tile_pad=10, pre_pad=0), 2),
    (1, (75, 101), dict(tile=48, tile_pad=8, pre_pad=3), 1.5),  # padded to a multiple of 4; Lanczos resize
    (4, (45, 61), dict(tile=32, tile_pad=10, pre_pad=10), 3),
])
def test_enhance_matches_official(tmp_path, scale, size, tiling, outscale):
    image = photo_crop(*size)
    path, module = official_checkpoint(tmp_path, scale, image)
    expected = official_enhance(path, module, image, outscale, **tiling)
    ours = BackgroundUpsampler.from_checkpoint(path, **tiling).enhance(image, outscale=outscale)
    assert ours.shape[:2] == (int(size[0] * outscale), int(size[1] * outscale))
    assert_same_image(expected, ours)


def test_grey_bgra_and_16_bit_images(tmp_path):
    bgr = photo_crop(30, 40)
    path, module = official_checkpoint(tmp_path, 2, bgr, seed=1)
    tiling = dict(tile=24, tile_pad=4, pre_pad=0)
    upsampler = BackgroundUpsampler.from_checkpoint(path, **tiling)
    alpha = cv2.cvtColor(photo_crop(30, 40)[::-1], cv2.COLOR_BGR2GRAY)
    for image in (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), np.dstack([bgr, alpha]), bgr.astype(np.uint16) * 257):
        assert_same_image(official_enhance(path, module, image, 2, **tiling), upsampler.enhance(image, outscale=2))


def test_bfloat16_stays_close(tmp_path):
    image = photo_crop(40, 48)
    path, _ = official_checkpoint(tmp_path, 2, image)
    full = BackgroundUpsampler.from_checkpoint(path, tile=0).enhance(image)
    half = BackgroundUpsampler.from_checkpoint(path, tile=0, dtype=jnp.bfloat16).enhance(image)
    # Looser than a trained model would need: spreading the output scaled the trunk's bf16 rounding up ~25 times.
    assert (full != half).any()  # bf16 did run
    assert np.abs(full.astype(np.int64) - half).mean() < 3  # measured 1.7 levels (max 7)


def test_tile_grid_as_official():
    # 150 rows in tiles of 64 with 10 of context: the official's tiles_y = ceil(150 / 64) = 3.
    assert tile_spans(150, 64, 10) == [((0, 64), (0, 74)), ((64, 128), (54, 138)), ((128, 150), (118, 150))]
    # The image ends within the context of the tile before the last: a fourth tile size.
    assert tile_spans(200, 64, 10)[2:] == [((128, 192), (118, 200)), ((192, 200), (182, 200))]
    assert tile_spans(50, 64, 10) == [((0, 50), (0, 50))]


def test_conversion_detects_options_and_is_strict():
    state = state_dict_numpy(official_rrdbnet(1, num_feat=6, num_block=3, num_grow_ch=5))
    options, _ = convert_rrdbnet({'params': state})
    assert options == dict(num_in_ch=3, num_out_ch=3, scale=1, num_feat=6, num_block=3, num_grow_ch=5)
    assert convert_rrdbnet(state)[0] == options  # a bare state dict
    assert convert_rrdbnet({'params_ema': state, 'params': {}})[0] == options  # params_ema comes first
    broken = dict(state, **{'conv_extra.weight': np.zeros((3, 3, 3, 3), np.float32)})
    del broken['body.1.rdb2.conv3.bias']
    broken['conv_hr.bias'] = np.zeros(5, np.float32)
    with pytest.raises(ConversionError) as error:
        convert_rrdbnet(broken)
    message = str(error.value)
    assert '1 missing: params/body_1/rdb2/conv3/bias' in message and '1 unused: conv_extra.weight' in message
    assert 'with the wrong shape: conv_hr.bias' in message
    with pytest.raises(ConversionError, match='not an RRDBNet'):
        convert_rrdbnet({'conv_first.weight': state['conv_first.weight']})
    with pytest.raises(ConversionError, match='not 1, 4 or 16 times'):
        convert_rrdbnet(dict(state, **{'conv_last.weight': np.zeros((5, 6, 3, 3), np.float32)}))


def test_library_does_not_import_torch():
    code = 'import sys, gfpgan_jax.inference.background; assert "torch" not in sys.modules, "torch imported"'
    subprocess.run([sys.executable, '-c', code], check=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))
