"""Small real face sets for training tests and benchmarks: aligned crops of the public-domain portraits the
bundled examples come from (scikit-image's astronaut, matplotlib's Grace Hopper), each aligned from its hand-placed
landmarks moved a little (shifted, scaled, rotated) and some mirrored, at the size a test trains at.

The held-out faces are other crops of the same two photos: they are not in the training set, though their people
are (two photos cannot give more people).
"""
import os

import cv2
import numpy as np

from examples.make_examples import PORTRAITS
from gfpgan_jax.inference.alignment import align_faces

# (dx, dy) px, scale, degrees, mirrored: six variations of each photo for training, two others held out.
TRAINING_JITTERS = ((0, 0, 1.0, 0, False), (4, 2, 1.05, 3, True), (-3, 3, 0.95, -4, False), (2, -4, 1.1, 2, True),
                    (-5, -2, 0.9, 5, False), (5, 4, 1.0, -2, True))
HELD_OUT_JITTERS = ((3, -3, 1.02, -5, False), (-4, 1, 0.97, 4, True))


def _moved(points, dx, dy, scale, degrees):
    centre = points.mean(axis=0)
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (points - centre) @ rotation.T * scale + centre + (dx, dy)


def write_faces(folder, size, jitters=TRAINING_JITTERS):
    """PNG faces (size x size) of every portrait under every jitter into `folder`; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, (photo, landmarks) in sorted(PORTRAITS.items()):
        for index, (dx, dy, scale, degrees, mirrored) in enumerate(jitters):
            points = _moved(np.float32(landmarks), dx, dy, scale, degrees).astype(np.float32)
            face = cv2.resize(align_faces(photo, points[None])[0][0], (size, size), interpolation=cv2.INTER_AREA)
            path = os.path.join(folder, f'{name}_{index}.png')
            cv2.imwrite(path, face[:, ::-1] if mirrored else face)
            paths.append(path)
    return paths
