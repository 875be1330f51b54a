"""Facial component boxes (left eye, right eye, mouth) for GFPGAN's component losses, from the official landmark file.

The official FFHQ_eye_mouth_landmarks_512.pth (made by GFPGAN's scripts/parse_landmark.py) is a torch.save'd dict:
the face's number as 8 digits ('00000000') -> {'left_eye': [x, y, half_len], 'right_eye': [...], 'mouth': [...]},
numbers as numpy.float64, in pixels of the 512 x 512 faces. 'left_eye' is the eye on the image's left. A box is
(x - h + 1, y - h + 1, x + h, y + h), with h the half length, times `eye_enlarge_ratio` (1.4 in the official
configuration) for the eyes, as the official dataset's `get_component_coordinates` computes it.

`five_point_landmarks` makes such entries from a face detector's five points, for faces without 68-point landmarks
(`python -m gfpgan_jax.cli.component_boxes`).
"""
import numbers
import os

import numpy as np

from gfpgan_jax.files.pth import load_pth, save_pth_data

COMPONENTS = ('left_eye', 'right_eye', 'mouth')
EYE_ENLARGE_RATIO = 1.4  # the official train_gfpgan_v1.yml's eye_enlarge_ratio
# parse_landmark.py never makes a half length under 16 px of a 512 face.
MIN_HALF_LENGTH_512 = 16.0
# From five points: an eye's half length is this fraction of the distance between the eye centres (the official's is
# half the eye's width; an eye is about 0.48 of that distance wide, by adult face proportions: the outer and inner
# eye corners are about 90 and 32 mm apart), and the mouth's is half the distance between its corners (the official's
# is half the width of the 20 mouth points, whose extremes are the corners).
EYE_HALF_LENGTH_PER_EYE_DISTANCE = 0.24
MOUTH_HALF_LENGTH_PER_CORNER_DISTANCE = 0.5


def read_landmarks(path):
    """{face number: (3, 3) float64 rows [x, y, half_len] for left eye, right eye, mouth} from an official-layout
    landmark file, read without torch and without running any of its pickle. A file of another structure is
    refused with a one-line ValueError."""
    path = os.fspath(path)
    entries = load_pth(path)
    if not isinstance(entries, dict):
        raise ValueError(f'{path}: not a landmark file: it holds a {type(entries).__name__}, not a dict')
    landmarks = {}
    for key, parts in entries.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(parts, dict)):
            raise ValueError(f'{path}: not a landmark file: entry {key!r} is not a face number with a dict')
        try:
            rows = [[float(value) for value in _three(parts[part])] for part in COMPONENTS]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f'{path}: entry {key!r} does not give [x, y, half_len] for each of '
                             f'{", ".join(COMPONENTS)}') from None
        landmarks[int(key)] = np.array(rows, np.float64)
    return landmarks


def _three(values):
    # A list of numbers (the official file), or a 1-d array or tensor of three.
    values = list(values)
    if len(values) != 3 or not all(isinstance(value, numbers.Real) for value in values):
        raise ValueError
    return values


def write_landmarks(path, landmarks):
    """Writes {face number: (3, 3) [x, y, half_len] rows} in the official layout (numpy.float64 numbers in lists,
    as parse_landmark.py saves them, so the official dataset can use the file too), atomically, without torch."""
    entries = {
        f'{index:08d}': {part: [np.float64(value) for value in row] for part, row in zip(COMPONENTS, rows)}
        for index, rows in sorted(landmarks.items())}
    save_pth_data(entries, path)


def component_boxes(landmarks, eye_enlarge_ratio=EYE_ENLARGE_RATIO, scale=1.0):
    """(3, 4) float32 boxes x1, y1, x2, y2 of left eye, right eye, mouth, for an unflipped face, from (3, 3) rows
    [x, y, half_len]; `scale` multiplies the landmarks first (faces stored at another size than the file's)."""
    landmarks = np.asarray(landmarks, np.float64) * scale
    centres = landmarks[:, :2]
    half = landmarks[:, 2:] * np.array([[eye_enlarge_ratio], [eye_enlarge_ratio], [1.0]])
    return np.concatenate([centres - half + 1, centres + half], axis=1).astype(np.float32)


def flip_boxes(boxes, size):
    """The boxes of the horizontally flipped face, as the official dataset makes them: left and right eye swap, and
    each centre x becomes size - x. Works on numpy and JAX arrays of shape (..., 3, 4)."""
    swapped = boxes[..., (1, 0, 2), :]
    # The official flips centres, x' = size - x, so x1' = x' - h + 1 = size + 1 - x2 and x2' = x' + h = size + 1 - x1.
    mirror = np.array([-1, 1, -1, 1], np.float32)
    shift = np.array([size + 1, 0, size + 1, 0], np.float32)
    return swapped[..., (2, 1, 0, 3)] * mirror + shift


def five_point_landmarks(points, size):
    """(3, 3) [x, y, half_len] rows from a face detector's five points (left eye, right eye, nose, left and right
    mouth corner; left as the image's left) of a size x size face: the eye centres are the eyes', with half length
    EYE_HALF_LENGTH_PER_EYE_DISTANCE x the distance between them; the mouth is centred between its corners, with half
    length MOUTH_HALF_LENGTH_PER_CORNER_DISTANCE x their distance. No half length is under the official 16 px at
    512 (scaled to `size`)."""
    points = np.asarray(points, np.float64).reshape(5, 2)
    left_eye, right_eye, _, mouth_left, mouth_right = points
    least = MIN_HALF_LENGTH_512 * size / 512
    eye_half = max(EYE_HALF_LENGTH_PER_EYE_DISTANCE * np.linalg.norm(right_eye - left_eye), least)
    mouth_half = max(MOUTH_HALF_LENGTH_PER_CORNER_DISTANCE * np.linalg.norm(mouth_right - mouth_left), least)
    return np.array([[*left_eye, eye_half], [*right_eye, eye_half], [*(mouth_left + mouth_right) / 2, mouth_half]])


class ComponentBoxes:
    """Boxes of the faces of a source, by face number, from a landmark file.

    out_size: the size of the training faces; landmark_size: that of the faces the file was measured on (512 for
    the official FFHQ file; default out_size); the landmarks are scaled by out_size / landmark_size.
    """

    def __init__(self, path, out_size, *, landmark_size=None, eye_enlarge_ratio=EYE_ENLARGE_RATIO):
        self.path = os.fspath(path)
        self.out_size = out_size
        scale = out_size / (landmark_size or out_size)
        self._boxes = {index: component_boxes(rows, eye_enlarge_ratio, scale)
                       for index, rows in read_landmarks(path).items()}

    def __len__(self):
        return len(self._boxes)

    def get(self, index):
        """(3, 4) float32 boxes of face `index`, or None when the file has none for it."""
        return self._boxes.get(index)

    def missing(self, count):
        """How many of faces 0 .. count - 1 have no boxes."""
        return sum(index not in self._boxes for index in range(count))
