"""Whole photos in, whole photos out: the official GFPGANer.enhance, with gfpgan-jax networks throughout.

Detect faces (RetinaFace), align each onto the FFHQ template, restore them in batches, and blend them back into
the photo (soft masks from face parsing) over a background that is upsampled (Real-ESRGAN) or resized.
"""
import numbers
from typing import NamedTuple

import numpy as np

from gfpgan_jax.inference import alignment
from gfpgan_jax.inference.batching import batch_shapes, pad_batch
from gfpgan_jax.inference.detection import detect_faces_within

# GFPGANer keeps only confident detections.
DETECTION_THRESHOLD = 0.97


class ImageRestoration(NamedTuple):
    cropped_faces: np.ndarray  # (n, 512, 512, 3) uint8 BGR, the aligned input faces
    restored_faces: np.ndarray  # (n, 512, 512, 3) uint8 BGR
    image: np.ndarray | None  # the whole restored photo, `upscale` times larger; None without paste-back


class AlignedFaces(NamedTuple):
    crops: np.ndarray  # (n, s, s, 3) uint8 BGR, s = the restorer's out_size
    transforms: np.ndarray  # (n, 2, 3) similarity transforms from the photo onto each crop
    landmarks: np.ndarray  # (n, 5, 2) eyes, nose and mouth corners in the photo


def as_bgr(image):
    """uint8 BGR (h, w, 3) from what cv2.imread gives: grey becomes BGR, an alpha channel is dropped."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f'expected a uint8 image, got {image.dtype}')
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or not image.shape[0] or not image.shape[1]:
        raise ValueError(f'expected an (h, w), (h, w, 3) or (h, w, 4) image, got {image.shape}')
    return np.ascontiguousarray(image[:, :, :3])


class ImageRestorer:
    """GFPGANer for whole photos.

    faces: a FaceRestorer; detector: a FaceDetector; parser: a FaceParser for soft paste masks (None: the
    official square masks); upsampler: a BackgroundUpsampler (None: the background is resized with Lanczos).
    upscale: the restored photo's size over the input's, a number >= 1. batch_size: faces per compiled call.

    Photos up to detection.MAX_DETECTION_PIXELS (4 MP) whose restored photo is at most
    alignment.WHOLE_CANVAS_PASTE_PIXELS (64 MP) come out as the official's; larger ones are searched for faces
    on a shrunk copy and pasted on face by face, so that memory stays bounded (see those two).
    """

    def __init__(self, faces, detector, parser=None, upsampler=None, upscale=2, batch_size=8):
        if isinstance(upscale, bool) or not isinstance(upscale, numbers.Real) or not 1 <= upscale < float('inf'):
            raise ValueError(f'upscale must be a number >= 1, got {upscale!r}')
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f'batch_size must be a whole number >= 1, got {batch_size!r}')
        self.faces = faces
        self.detector = detector
        self.parser = parser
        self.upsampler = upsampler
        self.upscale = upscale
        self.batch_size = batch_size
        self._next_face = 0

    def enhance(self, image, only_center_face=False, paste_back=True, fidelity=None):
        """GFPGANer.enhance on a photo as cv2.imread gives it: `align`, `restore_faces`, then `paste` back."""
        found = self.align(image, only_center_face)
        restored = self.restore_faces(found.crops, fidelity)
        return ImageRestoration(found.crops, restored,
                                self.paste(image, restored, found.transforms) if paste_back else None)

    def align(self, image, only_center_face=False):
        """The photo's faces (all, or the one nearest the centre) found and aligned onto the FFHQ template."""
        image = as_bgr(image)
        detections = detect_faces_within(self.detector, image, DETECTION_THRESHOLD)
        landmarks = alignment.face_landmarks(detections, image.shape, only_center_face=only_center_face)
        crops, transforms = alignment.align_faces(image, landmarks, self.faces.config.out_size)
        return AlignedFaces(crops, transforms, landmarks)

    def restore_faces(self, crops, fidelity=None, numbers=None):
        """BGR crops -> restored BGR faces; `fidelity` as `FaceRestorer.restore`. `numbers` (n,) pick each face's
        random noise (the same number, the same noise); by default they continue from the last call's."""
        if numbers is None:
            numbers = np.arange(self._next_face, self._next_face + len(crops))
            self._next_face += len(crops)
        restored, start = [], 0
        for size in batch_shapes(len(crops), self.batch_size):
            chunk = crops[start:start + size][..., ::-1]  # BGR -> RGB
            indices = pad_batch(numbers[start:start + size], size)
            restored.append(self.faces.restore(pad_batch(chunk, size), indices, fidelity)[:len(chunk), ..., ::-1])
            start += len(chunk)
        size = self.faces.config.out_size
        return np.concatenate(restored) if restored else np.zeros((0, size, size, 3), np.uint8)

    def paste(self, image, restored_faces, transforms):
        """The photo `upscale` times larger, its background upsampled (or resized), with the restored faces blended
        in where `align` found them (`transforms` from there)."""
        image = as_bgr(image)
        upsampled = self.upsampler.enhance(image, outscale=self.upscale) if self.upsampler else None
        canvas = alignment.background(image, self.upscale, upsampled)
        masks = [self.parser.face_paste_mask(face) for face in restored_faces] if self.parser else None
        return alignment.paste_faces(canvas, restored_faces, transforms, self.upscale, masks)
