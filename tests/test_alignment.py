"""Face selection, alignment and paste-back against facexlib's FaceRestoreHelper as GFPGANer configures it."""
import cv2
import matplotlib.cbook
import numpy as np
import pytest

import official  # noqa: F401  (facexlib imports torchvision)
from facexlib.utils import face_restoration_helper as facexlib_helper
from gfpgan_jax.inference import alignment
from parity_utils import FixedDetector


def photo():
    with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
        rgb = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    return rgb  # BGR, 600 x 512


def detection(centre, eye_gap, angle=0.0, score=0.99):
    """A detector row (box, score, five landmarks) for a face at `centre`, eyes `eye_gap` apart, tilted."""
    template = (alignment.FACE_TEMPLATE_512 - [256, 300]) * eye_gap / 126
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = template @ rotation.T + centre
    half = 1.4 * eye_gap
    box = [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half, score]
    return np.concatenate([box, points.ravel()]).astype(np.float32)


DETECTIONS = np.stack([
    detection((260, 280), 90, angle=0.1),
    detection((60, 520), 40, angle=-0.3),  # near a corner: the crop reaches past the border
    detection((400, 100), 3),  # eyes 3 px apart: skipped
    detection((300, 250), 25, angle=0.5),
])


@pytest.fixture
def official_helper(monkeypatch):
    def make(upscale, rows=DETECTIONS):
        monkeypatch.setattr(facexlib_helper, 'init_detection_model', lambda *a, **k: FixedDetector(rows))
        monkeypatch.setattr(facexlib_helper, 'init_parsing_model', lambda *a, **k: None)
        return facexlib_helper.FaceRestoreHelper(upscale, face_size=512, crop_ratio=(1, 1), save_ext='png',
                                                 use_parse=False, device='cpu')
    return make


def fake_restoration(crops):
    """Something visibly different from the crop, so that the paste shows."""
    return np.stack([cv2.GaussianBlur(255 - crop, (9, 9), 3) for crop in crops])


@pytest.mark.parametrize('only_center_face', [False, True])
def test_landmark_selection(official_helper, only_center_face):
    image = photo()
    helper = official_helper(2)
    helper.read_image(image)
    helper.get_face_landmarks_5(only_center_face=only_center_face, eye_dist_threshold=5)
    ours = alignment.face_landmarks(DETECTIONS, image.shape, only_center_face=only_center_face)
    assert len(ours) == (1 if only_center_face else 3)
    np.testing.assert_array_equal(ours, np.asarray(helper.all_landmarks_5))


@pytest.mark.parametrize('upscale', [1, 2, 3])
def test_align_and_paste_equal_the_official(official_helper, upscale):
    image = photo()
    helper = official_helper(upscale)
    helper.read_image(image)
    helper.get_face_landmarks_5(eye_dist_threshold=5)
    helper.align_warp_face()
    for face in fake_restoration(helper.cropped_faces):
        helper.add_restored_face(face)
    helper.get_inverse_affine(None)
    expected = helper.paste_faces_to_input_image()

    crops, transforms = alignment.align_faces(image, alignment.face_landmarks(DETECTIONS, image.shape))
    np.testing.assert_array_equal(crops, np.asarray(helper.cropped_faces))
    np.testing.assert_array_equal(transforms, np.asarray(helper.affine_matrices))
    pasted = alignment.paste_faces(alignment.background(image, upscale), fake_restoration(crops), transforms, upscale)
    assert pasted.shape == (image.shape[0] * upscale, image.shape[1] * upscale, 3)
    np.testing.assert_array_equal(pasted, expected)


def test_no_faces_gives_the_resized_image():
    image = photo()
    landmarks = alignment.face_landmarks(np.zeros((0, 15)), image.shape)
    crops, transforms = alignment.align_faces(image, landmarks)
    assert crops.shape == (0, 512, 512, 3) and len(transforms) == 0
    canvas = alignment.background(image, 2)
    np.testing.assert_array_equal(alignment.paste_faces(canvas, crops, transforms, 2), canvas)
