"""RoI Align against torchvision, and GFPGAN's facial-component crops against GFPGANModel.get_roi_regions.

Two references. torchvision 0.28's pure-PyTorch `_roi_align` (run eagerly: its module wraps it in torch.compile)
is torchvision's own code, but it clamps samples that the compiled kernels zero (more than a pixel past the
border) and takes at most `size` samples per bin; so it is the reference for boxes within a pixel of the image.
For boxes past the border, the reference is `kernel_roi_align` below, a NumPy transcription of the compiled CPU
kernel (torchvision/csrc/ops/cpu/roi_align_kernel.cpp and roi_align_common.h: forward and backward), which GFPGAN
trains with on GPUs; it is itself checked against `_roi_align` where the two must agree.
"""
import official  # noqa: F401  (first: makes torchvision importable)

import math
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from gfpgan.models.gfpgan_model import GFPGANModel
from gfpgan_jax.ops.roi_align import crop_facial_components, roi_align
from parity_utils import example_faces, max_abs, nchw

TORCHVISION_ROI_ALIGN = sys.modules['torchvision.ops.roi_align']
# One compilation per shape (op-by-op dispatch would compile each operation separately, for most of the time).
roi_align_jit = jax.jit(roi_align, static_argnums=2)
crop_facial_components_jit = jax.jit(crop_facial_components)
HEIGHT, WIDTH = 20, 24


@pytest.fixture
def eager_torchvision(monkeypatch):
    """torchvision.ops.roi_align running its pure-PyTorch path eagerly (the compiled ops do not load here)."""
    monkeypatch.setattr(TORCHVISION_ROI_ALIGN, '_roi_align', TORCHVISION_ROI_ALIGN._roi_align.__wrapped__)


def _corners(y, x, height, width):
    """The compiled kernel's bilinear corners of samples (y, x): indices and weights, zero weight outside."""
    outside = (y < -1) | (y > height) | (x < -1) | (x > width)
    y, x = np.maximum(y, 0), np.maximum(x, 0)
    y_low, x_low = y.astype(int), x.astype(int)
    y_last, x_last = y_low >= height - 1, x_low >= width - 1
    y_low, x_low = np.where(y_last, height - 1, y_low), np.where(x_last, width - 1, x_low)
    y_high, x_high = np.where(y_last, height - 1, y_low + 1), np.where(x_last, width - 1, x_low + 1)
    ly, lx = np.where(y_last, 0, y - y_low), np.where(x_last, 0, x - x_low)
    hy, hx = 1 - ly, 1 - lx
    keep = ~outside
    return [(y_low, x_low, hy * hx * keep), (y_low, x_high, hy * lx * keep),
            (y_high, x_low, ly * hx * keep), (y_high, x_high, ly * lx * keep)]


def kernel_roi_align(images, rois, out_h, out_w, grad_out=None):
    """torchvision's compiled roi_align (spatial_scale 1, sampling_ratio -1, aligned False) on NCHW arrays and
    (k, 5) rois: the output (k, c, out_h, out_w) and, given `grad_out`, the gradient w.r.t. images. Computed in the
    images' dtype with the kernel's order of operations; vectorised over one box's samples; per box as the kernel:
    grid = ceil(size / bins), count = grid_h * grid_w."""
    real = images.dtype.type
    _, channels, height, width = images.shape
    out = np.zeros((len(rois), channels, out_h, out_w), images.dtype)
    grad = np.zeros_like(images)
    for k, (index, x1, y1, x2, y2) in enumerate(np.asarray(rois, images.dtype)):
        b = int(index)
        roi_w, roi_h = max(x2 - x1, real(1)), max(y2 - y1, real(1))
        bin_h, bin_w = roi_h / real(out_h), roi_w / real(out_w)
        grid_h, grid_w = math.ceil(roi_h / real(out_h)), math.ceil(roi_w / real(out_w))
        count = real(max(grid_h * grid_w, 1))
        ph, pw, iy, ix = (a.astype(images.dtype) for a in np.meshgrid(
            np.arange(out_h), np.arange(out_w), np.arange(grid_h), np.arange(grid_w), indexing='ij'))
        y = y1 + ph * bin_h + (iy + real(0.5)) * bin_h / real(grid_h)
        x = x1 + pw * bin_w + (ix + real(0.5)) * bin_w / real(grid_w)
        for rows, cols, weight in _corners(y, x, height, width):
            out[k] += (weight * images[b][:, rows, cols]).sum((-1, -2))
            if grad_out is not None:
                share = weight[None] * grad_out[k][:, :, :, None, None] / count
                np.add.at(grad[b], (slice(None), rows, cols), share)
        out[k] /= count
    return out, grad


def _rois(boxes):
    """(b, n, 4) batched boxes -> torchvision's (b * n, 5) rows (batch index, x1, y1, x2, y2)."""
    b, n, _ = boxes.shape
    return np.concatenate([np.repeat(np.arange(b, dtype=np.float64), n)[:, None], boxes.reshape(-1, 4)], axis=1)


def _flat(crops):
    """(b, n, h, w, c) -> torchvision's (b * n, c, h, w)."""
    return nchw(np.asarray(crops).reshape((-1,) + crops.shape[2:]))


def _random_boxes(rng, b, low, high, sizes):
    """Per image one box of each size (width, height) at a random place, the part it samples (at least 1 x 1
    pixels) within [low, high)."""
    boxes = []
    for _ in range(b):
        for w, h in sizes:
            x1 = rng.uniform(low[0], high[0] - max(w, 1))
            y1 = rng.uniform(low[1], high[1] - max(h, 1))
            boxes.append([x1, y1, x1 + w, y1 + h])
    return np.float64(boxes).reshape(b, len(sizes), 4)


# Box sizes (w, h): a point, below one pixel, below a bin, about a bin, tall, wide (21 px: 3 samples in 7 bins);
# the tests add the whole image.
SIZES = [(0, 0), (0.3, 0.6), (1.7, 2.2), (4.8, 4.0), (3.5, 17.0), (21.0, 2.5)]


@pytest.mark.parametrize('output_size', [(5, 7), (1, 1)])
def test_matches_torchvision_within_the_image(eager_torchvision, output_size):
    """Boxes of every size anywhere within a pixel of the image (where torchvision's pure-PyTorch path and its
    kernels agree), three images with their own boxes: values (float32, 1e-5) and the image gradient (float64,
    relative 1e-8) against torchvision; the kernel transcription agrees with torchvision to 1e-12."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, HEIGHT, WIDTH, 4)).astype(np.float32)
    boxes = _random_boxes(rng, 3, (-1, -1), (WIDTH, HEIGHT), SIZES)
    boxes = np.concatenate([boxes, np.broadcast_to([[[0.0, 0.0, WIDTH, HEIGHT]]], (3, 1, 4))], axis=1)
    rois = _rois(boxes)

    ours = roi_align_jit(jnp.asarray(images), jnp.asarray(boxes, jnp.float32), output_size)
    theirs = torchvision.ops.roi_align(torch.from_numpy(nchw(images)), torch.tensor(rois, dtype=torch.float32),
                                       output_size)
    assert ours.shape == (3, len(SIZES) + 1, *output_size, 4) and ours.dtype == jnp.float32
    assert max_abs(_flat(ours), theirs) < 1e-5

    with jax.enable_x64(True):
        images64 = torch.from_numpy(nchw(images).astype(np.float64)).requires_grad_()
        theirs = torchvision.ops.roi_align(images64, torch.tensor(rois), output_size)
        grad_out = rng.standard_normal(theirs.shape)
        theirs.backward(torch.from_numpy(grad_out))
        ours, pullback = jax.vjp(lambda x: roi_align_jit(x, jnp.asarray(boxes), output_size),
                                 jnp.asarray(images, jnp.float64))
        (grad,) = pullback(jnp.asarray(np.transpose(grad_out, (0, 2, 3, 1)).reshape(ours.shape)))
        assert max_abs(_flat(ours), theirs.detach()) < 1e-12
        torch_grad = images64.grad.numpy()
        assert max_abs(nchw(grad), torch_grad) <= 1e-8 * np.abs(torch_grad).max()

    kernel, kernel_grad = kernel_roi_align(images64.detach().numpy(), rois, *output_size, grad_out)
    assert max_abs(kernel, theirs.detach()) < 1e-12
    assert max_abs(kernel_grad, torch_grad) < 1e-12


def test_matches_the_kernel_past_the_border(eager_torchvision):
    """Boxes reaching past the border, wholly outside it, and larger than the image, on every side: values and
    image gradient (float64) against the kernel transcription, to 1e-12 / relative 1e-8. torchvision's pure-PyTorch
    path gives other values here (clamped samples), which this test would tell apart."""
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, HEIGHT, WIDTH, 3))
    partly = _random_boxes(rng, 2, (-8, -8), (WIDTH + 8, HEIGHT + 8), [(9.0, 7.0), (15.5, 3.0), (2.0, 19.0)])
    outside = np.float64([[[-9.0, 2.0, -2.5, 8.0], [3.0, HEIGHT + 1.5, 9.0, HEIGHT + 6.0],
                           [-30.0, -25.0, WIDTH + 28.0, HEIGHT + 31.0]],
                          [[WIDTH + 1.2, -4.0, WIDTH + 9.0, 4.0], [-1.6, -1.3, 3.0, 2.0],
                           [-0.5, -0.5, WIDTH + 0.5, HEIGHT + 0.5]]])
    boxes = np.concatenate([partly, outside], axis=1)
    rois = _rois(boxes)
    output_size = (4, 3)

    with jax.enable_x64(True):
        ours, pullback = jax.vjp(lambda x: roi_align_jit(x, jnp.asarray(boxes), output_size), jnp.asarray(images))
        grad_out = rng.standard_normal(ours.shape)
        (grad,) = pullback(jnp.asarray(grad_out))
    kernel, kernel_grad = kernel_roi_align(nchw(images), rois, *output_size, nchw(grad_out.reshape(-1, 4, 3, 3)))
    assert max_abs(_flat(ours), kernel) < 1e-12
    assert max_abs(nchw(grad), kernel_grad) <= 1e-8 * np.abs(kernel_grad).max()
    assert np.abs(kernel[3]).max() == 0  # the box wholly left of image 0 reads nothing

    clamped = torchvision.ops.roi_align(torch.from_numpy(nchw(images)), torch.tensor(rois), output_size)
    assert max_abs(clamped, kernel) > 0.1


def test_one_compilation_serves_any_boxes():
    """Under jit the samples per bin follow the boxes at run time: boxes needing 1 and 40 samples per bin and
    axis, through one compiled function, each equal to the kernel transcription (float32, 1e-5)."""
    crop = jax.jit(lambda images, boxes: roi_align(images, boxes, (2, 2)))  # a cache of its own
    images = np.random.default_rng(3).standard_normal((1, 8, 8, 2)).astype(np.float32)
    for boxes in ([[[1.0, 2.0, 3.0, 4.0]]], [[[-40.0, -35.0, 40.0, 45.0]]]):
        boxes = np.float32(boxes)
        theirs, _ = kernel_roi_align(nchw(images), _rois(boxes), 2, 2)
        assert max_abs(_flat(crop(jnp.asarray(images), jnp.asarray(boxes))), theirs) < 1e-5
    assert crop._cache_size() == 1


def _standin_model(gt, output, left, right, mouth):
    """What get_roi_regions reads of a GFPGANModel."""
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return types.SimpleNamespace(opt={'network_g': {'out_size': gt.shape[1]}}, device='cpu',
                                 gt=tensor(nchw(gt)), output=tensor(nchw(output)), loc_left_eyes=tensor(left),
                                 loc_right_eyes=tensor(right), loc_mouths=tensor(mouth))


def _kernel_roi_align_torch(input, boxes, output_size):
    """torchvision.ops.roi_align's compiled behaviour (the transcription), in place of gfpgan's import of it."""
    out, _ = kernel_roi_align(input.numpy(), boxes.numpy(), output_size, output_size)
    return torch.from_numpy(out)


# FFHQ-like component boxes (x1, y1, x2, y2) on a 512 face; the second face's left eye reaches past the border.
LEFT_EYES = np.float64([[160.3, 211.7, 237.9, 289.1], [-6.5, 230.0, 60.2, 297.4]])
RIGHT_EYES = np.float64([[272.6, 215.2, 351.0, 292.6], [300.1, 190.4, 371.8, 262.0]])
MOUTHS = np.float64([[201.4, 330.8, 311.2, 440.6], [180.0, 350.5, 330.3, 500.9]])


@pytest.mark.parametrize('faces, side, tolerance', [('photos', 512, 1e-5), ('noise', 1024, 1e-10)])
def test_facial_component_crops_match_get_roi_regions(monkeypatch, faces, side, tolerance):
    """GFPGANModel.get_roi_regions, called unbound on a stand-in model with its roi_align replaced by the kernel
    transcription, against crop_facial_components on the same faces and boxes: every crop of generated and real
    faces, face_ratio 1 and 2 (crop sizes and values scaled). The bundled photos at 512 px in float32 (1e-5);
    random 1024 px faces in float64 (1e-10): in float32, rounding a sample coordinate differently (XLA divides
    through a reciprocal) moves it by up to 6e-5 px at 1000 px, which white noise turns into 2e-4 of value."""
    monkeypatch.setattr(sys.modules['gfpgan.models.gfpgan_model'], 'roi_align', _kernel_roi_align_torch)
    if faces == 'photos':
        gt = example_faces()
        output = np.ascontiguousarray(gt[::-1, :, ::-1])
    else:
        gt, output = np.random.default_rng(2).uniform(-1, 1, (2, 2 * 512 // side, side, side, 3))
    dtype = gt.dtype
    boxes = [(b * side / 512)[:len(gt)].astype(dtype) for b in (LEFT_EYES, RIGHT_EYES, MOUTHS)]

    model = _standin_model(gt, output, *boxes)
    GFPGANModel.get_roi_regions(model)
    with jax.enable_x64(dtype == np.float64):
        for images, names in ((output, ('left_eyes', 'right_eyes', 'mouths')),
                              (gt, ('left_eyes_gt', 'right_eyes_gt', 'mouths_gt'))):
            crops = crop_facial_components_jit(jnp.asarray(images), *map(jnp.asarray, boxes))
            for ours, name in zip(crops, names):
                theirs = getattr(model, name)
                assert ours.dtype == dtype and nchw(ours).shape == theirs.shape, name
                assert max_abs(nchw(ours), theirs) < tolerance, name


def test_refuses_bad_input():
    images = jnp.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match='boxes must be'):
        roi_align(images, jnp.zeros((3, 1, 4)), 2)
    with pytest.raises(ValueError, match='images must be'):
        roi_align(images[0], jnp.zeros((2, 1, 4)), 2)
    with pytest.raises(ValueError, match='at least 512'):
        crop_facial_components(jnp.zeros((1, 256, 256, 3)), *[jnp.zeros((1, 4))] * 3)
