"""Faces out of a whole image and back in: the official GFPGANer's geometry (facexlib's FaceRestoreHelper with
GFPGANer's settings: 512 px faces, the five-point FFHQ template, no padding of blurry borders).

Host-side numpy/OpenCV on purpose: the warps are small next to the network, and using cv2's own routines is what
makes the pixels equal the official ones.
"""
import cv2
import numpy as np

# Eye centres, nose tip and mouth corners of an aligned FFHQ face at 512 x 512 (x, y).
FACE_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]])
# Grey, so that a face near the image border is not cut against black.
BORDER_GREY = (135, 133, 132)


def face_landmarks(detections, image_shape, only_center_face=False, eye_dist_threshold=5):
    """The (n, 5, 2) landmarks of the detections to restore.

    `detections` are the detector's (n, 15) rows (box, score, five points). Faces whose eyes are closer than
    `eye_dist_threshold` pixels are side views or specks and are skipped; `only_center_face` keeps the one whose
    box centre is nearest the image centre.
    """
    # float32 as the detector gives them: cv2 fits the transform to exactly these numbers.
    detections = np.asarray(detections, np.float32).reshape(-1, 15)
    eyes_apart = np.hypot(detections[:, 5] - detections[:, 7], detections[:, 6] - detections[:, 8])
    if eye_dist_threshold is not None:
        detections = detections[eyes_apart >= eye_dist_threshold]
    if only_center_face and len(detections):
        height, width = image_shape[:2]
        centres = np.stack([detections[:, 0] + detections[:, 2], detections[:, 1] + detections[:, 3]], 1) / 2
        detections = detections[[int(np.argmin(np.linalg.norm(centres - [width / 2, height / 2], axis=1)))]]
    return detections[:, 5:15].reshape(-1, 5, 2)


def align_faces(image, landmarks, face_size=512):
    """Crops (n, face_size, face_size, 3) of `image` with each face's landmarks moved onto the template, and the
    (n, 2, 3) similarity transforms that did it."""
    template = FACE_TEMPLATE_512 * (face_size / 512.0)
    crops, transforms = [], []
    for points in landmarks:
        # LMEDS (least median of squares) like the official: one bad landmark does not drag the fit.
        transform = cv2.estimateAffinePartial2D(points, template, method=cv2.LMEDS)[0]
        crops.append(cv2.warpAffine(image, transform, (face_size, face_size), borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=BORDER_GREY))
        transforms.append(transform)
    return np.asarray(crops, np.uint8).reshape(-1, face_size, face_size, image.shape[2]), np.asarray(transforms)


def background(image, upscale, upsampled=None):
    """The canvas the faces are pasted on: `upsampled` (e.g. Real-ESRGAN's output) or the image itself, brought
    to exactly `upscale` times the image size with Lanczos."""
    height, width = image.shape[:2]
    size = (int(width * upscale), int(height * upscale))
    return cv2.resize(image if upsampled is None else upsampled, size, interpolation=cv2.INTER_LANCZOS4)


def paste_faces(canvas, faces, transforms, upscale, face_masks=None):
    """Blend restored `faces` into `canvas` (already `upscale` times the input) where they were cut out.

    face_masks: one soft mask per face at the face's size (from face parsing), or None for the official square
    mask, eroded and feathered by an amount that grows with the face.
    """
    height, width = canvas.shape[:2]
    # numpy's own promotion, as in the official: float32 blends for square masks, float64 for parsed ones.
    result = canvas
    for index, (face, transform) in enumerate(zip(faces, transforms)):
        inverse = cv2.invertAffineTransform(transform) * upscale
        if upscale > 1:
            inverse[:, 2] += 0.5 * upscale  # pixel centres move by half a source pixel when upscaling
        warped_face = cv2.warpAffine(face, inverse, (width, height))
        if face_masks is not None:
            soft = cv2.warpAffine(face_masks[index], inverse, (width, height), flags=cv2.INTER_AREA)
        else:
            soft, warped_face = _square_mask(face.shape[:2], inverse, (width, height), upscale, warped_face)
        result = soft[:, :, None] * warped_face + (1 - soft[:, :, None]) * result
    return result.astype(np.uint8)  # truncated, not rounded, as the official


def _square_mask(face_shape, inverse, size, upscale, warped_face):
    """The soft mask of a whole square face and the face trimmed of its interpolated black rim."""
    mask = cv2.warpAffine(np.ones(face_shape[::-1], np.float32), inverse, size)
    rim = int(2 * upscale)
    mask = cv2.erode(mask, np.ones((rim, rim), np.uint8))
    trimmed = mask[:, :, None] * warped_face
    edge = int(np.sum(mask) ** 0.5) // 20
    inner = cv2.erode(mask, np.ones((2 * edge, 2 * edge), np.uint8))
    return cv2.GaussianBlur(inner, (2 * edge + 1, 2 * edge + 1), 0), trimmed
