"""Face parsing for paste-back: ParseNet's weights converted from the official checkpoint, and the soft mask that
the official helper (facexlib's `paste_faces_to_input_image` with use_parse) blends each restored face with.

>>> parser = FaceParser.from_checkpoint('parsing_parsenet.pth')
>>> mask = parser.face_paste_mask(restored_face)  # uint8 BGR (s, s, 3) -> float64 (s, s) in [0, 1]
"""
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.convert.parsenet import convert_parsenet
from gfpgan_jax.inference.loading import FromOfficialWeights
from gfpgan_jax.models.parsenet import ParseNet

PARSE_SIZE = 512  # the official parses every face at this size, whatever the face size
# 255 for the classes the face is pasted with, 0 for those the photo keeps: background (0), neck (14) and cloth,
# hair and hat (16-18), in CelebAMask-HQ's class order.
MASK_COLORMAP = np.array([0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0],
                         np.float64)
BLUR_KERNEL = (101, 101)
BLUR_SIGMA = 11
# The blurred mask is cut to zero this close to the face's edge, so no hard crop line shows in the photo.
BORDER = 10


def to_parsenet_input(face):
    """uint8 BGR face (h, w, 3) -> (1, 512, 512, 3) float32 RGB in [-1, 1], resized and normalised as the
    official does it in numpy and torch (so in the same float32 steps)."""
    face = cv2.resize(face, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR)
    rgb = face[:, :, ::-1].astype(np.float32) / 255.0
    return ((rgb - 0.5) / 0.5)[None]


def paste_mask_from_labels(labels, face_size):
    """Parse labels (512, 512) -> the soft mask (face_size, face_size), float64 in [0, 1]: the kept classes,
    blurred twice, with a zeroed border, at the face's size."""
    mask = MASK_COLORMAP[labels]
    mask = cv2.GaussianBlur(mask, BLUR_KERNEL, BLUR_SIGMA)
    mask = cv2.GaussianBlur(mask, BLUR_KERNEL, BLUR_SIGMA)
    mask[:BORDER, :] = 0
    mask[-BORDER:, :] = 0
    mask[:, :BORDER] = 0
    mask[:, -BORDER:] = 0
    return cv2.resize(mask / 255.0, (face_size, face_size))


class FaceParser(FromOfficialWeights):
    """ParseNet with its weights, compiled once per input shape.

    model: the network's options (the official ones by default; `ParseNet(dtype=jnp.bfloat16)` for bf16
    compute, though bf16 can flip the parse labels of near-tied pixels). The official file is parsing_parsenet.pth.
    """
    RELEASE = 'parsing_parsenet'

    def __init__(self, variables, model=ParseNet()):
        self.model = model
        self.variables = jax.device_put(variables)
        # Jitted per instance: a jit on the method with `self` static would keep every parser alive.
        self._forward = jax.jit(model.apply)
        # Only the labels leave the device, not 19 float scores per pixel; argmax takes the first of tied
        # classes, as torch's does.
        self._labels = jax.jit(lambda variables, images: jnp.argmax(model.apply(variables, images).logits, -1))

    @classmethod
    def from_state_dict(cls, state, model=ParseNet()):
        return cls(convert_parsenet(state, model), model)

    def apply(self, images):
        """The raw forward pass on RGB [-1, 1] float images (b, h, w, 3): a `Parsing` (logits, image)."""
        return self._forward(self.variables, images)

    def labels(self, face):
        """uint8 BGR face (h, w, 3) -> its parse labels (512, 512), int."""
        face = np.asarray(face)
        if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
            raise ValueError(f'expected a uint8 BGR face (h, w, 3), got {face.dtype} {face.shape}')
        return np.asarray(self._labels(self.variables, to_parsenet_input(face))[0])

    def face_paste_mask(self, face):
        """uint8 BGR square face (s, s, 3) -> its soft paste mask (s, s), float64 in [0, 1], as the official
        computes it before warping it into the photo."""
        face = np.asarray(face)
        if face.ndim != 3 or face.shape[0] != face.shape[1]:
            raise ValueError(f'expected a square face (s, s, 3), got {face.shape}')
        return paste_mask_from_labels(self.labels(face), face.shape[0])
