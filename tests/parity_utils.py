"""Helpers for comparing the official PyTorch modules with ours."""
import os

import numpy as np
import torch


def randomize(module, seed=0):
    """Give every parameter random values, including those the official initialises to constants.

    Noise-injection strengths start at zero and biases at zero or one, which would hide those paths from a
    comparison; buffers (the stored noise images, batch-norm statistics) are redrawn too, integer counters not.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            fresh = torch.randn(tensor.shape, generator=generator)
            if name.endswith('bias') or tensor.ndim == 1:
                tensor.add_(0.1 * fresh)  # around the initial value: modulation biases start at one
            else:
                tensor.copy_(fresh * tensor.std().clamp(min=1e-2))
    return module.eval()


def state_dict_numpy(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def nchw(array):
    return np.transpose(np.asarray(array), (0, 3, 1, 2))


def nhwc(tensor):
    return np.transpose(tensor.detach().numpy(), (0, 2, 3, 1))


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def example_faces():
    """The bundled aligned photos as model input: (2, 512, 512, 3) in [-1, 1]."""
    import cv2
    folder = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned')
    faces = np.stack([cv2.imread(os.path.join(folder, f'{name}.png'))[..., ::-1]
                      for name in ('grace_hopper', 'astronaut')])
    return (faces.astype(np.float32) / 255 - 0.5) / 0.5


def bf16_psnr(config, variables, images):
    """PSNR (dB) of the bf16 model's uint8 faces against the fp32 model's."""
    import jax
    import jax.numpy as jnp

    from gfpgan_jax.models.generator import build_model

    def uint8_faces(dtype):
        out = jax.jit(lambda v, x: build_model(config, dtype).apply(v, x, noise='fixed'))(variables, images)
        return np.asarray(jnp.round((jnp.clip(out.image, -1, 1) + 1) * 127.5))

    mse = np.mean((uint8_faces(jnp.float32) - uint8_faces(jnp.bfloat16)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


def tame_rgb_heads(module, factor=40):
    """Scale the decoder's RGB heads down so a randomized original-architecture GFPGANv1 (whose random-weight
    images span +-50) draws images within about [-1, 1], as a trained model does; otherwise nearly every uint8
    pixel saturates and comparisons of images say little."""
    with torch.no_grad():
        for name, param in module.stylegan_decoder.named_parameters():
            if name.startswith('to_rgb') and name.endswith('modulated_conv.weight'):
                param.div_(factor)
    return module


def calibrate_batch_norms(module, images):
    """Batch-norm statistics measured on `images`, as a trained network's are on its data. With drawn ones a
    random network's outputs barely vary across an image (a face parser's map is one class everywhere)."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = 1.0  # the running statistics become those of this one batch
    with torch.no_grad():
        module.train()(images)
    return module.eval()


def detection_rows(landmarks, margin=15):
    """Face detector rows (box, score, five points) for faces with known landmarks (n, 5, 2)."""
    rows = []
    for points in np.asarray(landmarks, np.float32):
        (x1, y1), (x2, y2) = points.min(0) - margin, points.max(0) + margin
        rows.append(np.concatenate([[x1, y1, x2, y2, 0.99], points.ravel()]))
    return np.float32(rows).reshape(-1, 15)


class FixedDetector:
    """Reports the same faces in every image, where a detector with random weights would find none (RetinaFace's
    own parity is tested in test_retinaface.py). `detector`, if given, still runs first, for timing."""

    def __init__(self, rows, detector=None):
        self.rows = rows
        self.detector = detector

    def detect_faces(self, image, conf_threshold):
        if self.detector is not None:
            self.detector.detect_faces(image, conf_threshold)
        return self.rows.copy()
