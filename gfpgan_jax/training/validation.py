"""Validation during training: the EMA generator restores a fixed set of held-out faces, scored by PSNR and SSIM
(basicsr's calculate_psnr / calculate_ssim, RGB, crop_border 0, as the official recipe's validation), and the first
few are drawn as a degraded | restored | ground truth grid.

The degraded inputs are made once, from a fixed key, with the configured degradation (the paper's CelebA-Test
synthesis by default), or read from a folder of inputs paired with the ground truth by sorted file name (the
official PairedImageDataset layout). The restored faces are quantised to 8 bits before scoring, as basicsr's
tensor2img does, and the degraded inputs are scored too: the figure to beat.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.data.degradations import degrade
from gfpgan_jax.data.sources import FolderFaces
from gfpgan_jax.evaluation.pixel import psnr, ssim
from gfpgan_jax.training.mesh import batch_sharding, replicated, to_host


def to_uint8(images):
    """[-1, 1] images -> uint8 levels, clipped and rounded (basicsr's tensor2img with min_max (-1, 1))."""
    return jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)


def read_faces(source, limit=None):
    count = len(source) if limit is None else min(limit, len(source))
    return np.stack([source[index] for index in range(count)])


class Validation:
    """A fixed set of faces and their degraded versions, restored on demand by a generator's parameters.

    gt: uint8 (n, s, s, 3) RGB; lq: uint8 (n, s, s, 3) inputs, or None to degrade gt with `degradation` from
    `seed`; generator: the Flax module; mesh: where to run (the faces are split over its devices in batches of
    `batch_size`, a multiple of the device count); samples: faces drawn in the grid.
    """

    def __init__(self, gt, generator, mesh, *, lq=None, degradation=None, seed=0, batch_size=8, samples=4):
        devices = mesh.devices.size
        self.batch_size = -(-batch_size // devices) * devices
        self.count = len(gt)
        self.samples = min(samples, self.count)
        self.mesh = mesh
        if lq is None:
            key = jax.random.key(seed)
            lq = np.concatenate([
                np.asarray(to_uint8(degrade(jax.random.fold_in(key, start), jnp.asarray(gt[start:start + batch_size]),
                                            config=degradation)['lq']))
                for start in range(0, self.count, batch_size)])
        elif lq.shape != gt.shape:
            raise ValueError(f'validation inputs {lq.shape} and ground truth {gt.shape} differ in shape')
        self.gt, self.lq = gt, lq
        self._restore = jax.jit(functools.partial(_restore, generator),
                                in_shardings=(replicated(mesh), replicated(mesh), batch_sharding(mesh)),
                                out_shardings=replicated(mesh))

    @classmethod
    def from_folders(cls, path, size, generator, mesh, *, lq_path='', limit=None, **options):
        gt = read_faces(FolderFaces(path, size), limit)
        lq = read_faces(FolderFaces(lq_path, size), limit) if lq_path else None
        if lq is not None and len(lq) != len(gt):
            raise ValueError(f'{lq_path} holds {len(lq)} faces and {path} {len(gt)}: they must pair up')
        return cls(gt, generator, mesh, lq=lq, **options)

    def restore(self, params, noise):
        """uint8 restored faces (n, s, s, 3), on the host."""
        restored = []
        for start in range(0, self.count, self.batch_size):
            chunk = self.lq[start:start + self.batch_size]
            padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:], np.uint8)])
            inputs = jax.make_array_from_callback(padded.shape, batch_sharding(self.mesh),
                                                  lambda index, padded=padded: padded[index])
            restored.append(to_host(self._restore(params, noise, inputs))[:len(chunk)])
        return np.concatenate(restored)

    def evaluate(self, params, noise):
        """({'psnr', 'ssim', 'psnr_input', 'ssim_input'}: means over the faces, the sample grid's columns)."""
        restored = self.restore(params, noise)
        scores = {
            'psnr': float(np.mean(psnr(restored, self.gt))), 'ssim': float(np.mean(ssim(restored, self.gt))),
            'psnr_input': float(np.mean(psnr(self.lq, self.gt))), 'ssim_input': float(np.mean(ssim(self.lq, self.gt)))}
        k = self.samples
        return scores, (self.lq[:k], restored[:k], self.gt[:k])


def _restore(generator, params, noise, lq):
    images = lq.astype(jnp.float32) / 127.5 - 1.0
    restored = generator.apply({'params': params, 'noise': noise}, images, noise='fixed').image
    return to_uint8(restored)
