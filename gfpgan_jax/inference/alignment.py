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
# Canvases up to this size are pasted on as a whole (see `paste_faces`): a 4 MP photo at 4x, in 2.2 GB.
WHOLE_CANVAS_PASTE_PIXELS = 64_000_000
# The blend runs over bands of about this many pixels, so that its float temporaries stay small.
BLEND_BAND_PIXELS = 1 << 20


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

    Up to WHOLE_CANVAS_PASTE_PIXELS each face is warped onto the whole canvas and the blends are carried in float
    from face to face, which gives the official's pixels exactly. A larger canvas gets each face warped and blended
    band by band over the part of it the face covers, rounded down to uint8 after each face: memory then follows a
    band and not the photo (the official way takes about 110 bytes a canvas pixel: 20 GB for a 48 MP photo at 2x),
    at the cost of a level here and there where cv2's fixed-point warp rounds a shifted transform differently, or
    where faces overlap.
    """
    height, width = canvas.shape[:2]
    whole = height * width <= WHOLE_CANVAS_PASTE_PIXELS
    # numpy's own promotion, as in the official: float32 blends for square masks, float64 for parsed ones.
    result = canvas.astype(np.float32 if face_masks is None else np.float64) if whole and len(faces) else canvas.copy()
    for index, (face, transform) in enumerate(zip(faces, transforms)):
        inverse = cv2.invertAffineTransform(transform) * upscale
        if upscale > 1:
            inverse[:, 2] += 0.5 * upscale  # pixel centres move by half a source pixel when upscaling
        left, top, right, bottom = (0, 0, width, height) if whole else _footprint(face.shape, inverse, width, height)
        if right > left and bottom > top:  # else the face lies outside the canvas
            inverse[:, 2] -= (left, top)
            _blend(result[top:bottom, left:right], face, inverse, upscale,
                   None if face_masks is None else face_masks[index], warp_by_band=not whole)
    return result.astype(np.uint8, copy=False)  # truncated, not rounded, as the official


def _footprint(face_shape, inverse, width, height):
    """(left, top, right, bottom) of the canvas pixels a face warped by `inverse` can reach, clipped to the canvas:
    the face with the one pixel around it that bilinear interpolation reads, and a pixel of zeros around that, so
    that erosion and blur see the same neighbourhood as on the whole canvas."""
    rows, cols = face_shape[:2]
    corners = np.array([[-1, -1, 1], [cols, -1, 1], [-1, rows, 1], [cols, rows, 1]], np.float64) @ inverse.T
    left, top = np.floor(corners.min(axis=0)).astype(int) - 1
    right, bottom = np.ceil(corners.max(axis=0)).astype(int) + 2
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def _blend(target, face, inverse, upscale, face_mask, warp_by_band):
    """Blend one face into `target` in place: a float canvas, or a uint8 region (each blend then truncated), onto
    whose pixels `inverse` warps the face. The blend runs band by band, so that its float temporaries stay small;
    with `warp_by_band` the warps do too (a band's warp is that of a shifted transform, which cv2 may round
    differently from the whole warp). The square mask is eroded and blurred whole, so it is always made whole."""
    height, width = target.shape[:2]
    size = width, height
    trim = soft = warped_face = None
    if face_mask is None:
        soft, trim = _square_mask(face.shape[:2], inverse, size, upscale)
    elif not warp_by_band:
        soft = cv2.warpAffine(face_mask, inverse, size, flags=cv2.INTER_AREA)
    if not warp_by_band:
        warped_face = cv2.warpAffine(face, inverse, size)
    rows = max(1, BLEND_BAND_PIXELS // width)
    for start in range(0, height, rows):
        band = slice(start, start + rows)
        if warp_by_band:
            shifted = inverse - [[0, 0, 0], [0, 0, start]]
            band_size = width, min(rows, height - start)
            face_band = cv2.warpAffine(face, shifted, band_size)
            soft_band = soft[band] if soft is not None else cv2.warpAffine(face_mask, shifted, band_size,
                                                                           flags=cv2.INTER_AREA)
        else:
            face_band, soft_band = warped_face[band], soft[band]
        alpha = soft_band[:, :, None]
        pasted = face_band if trim is None else trim[band, :, None] * face_band
        target[band] = alpha * pasted + (1 - alpha) * target[band]


def _square_mask(face_shape, inverse, size, upscale):
    """The soft mask of a whole square face, and the mask that trims the warped face of its interpolated black
    rim."""
    mask = cv2.warpAffine(np.ones(face_shape[::-1], np.float32), inverse, size)
    rim = int(2 * upscale)
    mask = cv2.erode(mask, np.ones((rim, rim), np.uint8))
    edge = int(np.sum(mask) ** 0.5) // 20
    inner = cv2.erode(mask, np.ones((2 * edge, 2 * edge), np.uint8))
    return cv2.GaussianBlur(inner, (2 * edge + 1, 2 * edge + 1), 0), mask
