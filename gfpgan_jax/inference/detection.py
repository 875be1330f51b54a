"""Face detection as facexlib's `RetinaFace.detect_faces`: the network in JAX, priors, decoding and NMS on the host.

>>> detector = FaceDetector.from_checkpoint('detection_Resnet50_Final.pth')
>>> detections = detector.detect_faces(image_bgr)  # (n, 15): x1, y1, x2, y2, score, five (x, y) landmarks

The host-side arithmetic is float32 in the official order, so that boxes agree with facexlib's to float rounding.
"""
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.convert.retinaface import convert_retinaface
from gfpgan_jax.inference.loading import FromOfficialWeights
from gfpgan_jax.models.retinaface import RetinaFace

# facexlib's cfg_re50 / cfg_mnet (the two agree on all of these).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
# Without `use_origin_size`, the shorter side is scaled to TARGET_SIZE unless the longer would pass MAX_SIZE.
TARGET_SIZE, MAX_SIZE = 1600, 2150
# Larger photos are searched on a copy shrunk to this many pixels (`detect_faces_within`): the network's memory
# grows with the photo (about 0.35 GB a megapixel on the CPU, 15 GB for 48 MP), and its anchors, 16 to 512 pixels,
# do not fit the faces of such photos anyway.
MAX_DETECTION_PIXELS = 4_000_000


def prior_boxes(height, width):
    """(n, 4) float32 anchors (cx, cy, w, h) relative to the image, in the order of the network's outputs: by
    level, then row, column and anchor size."""
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        rows, cols = -(-height // step), -(-width // step)
        # float64 as facexlib's Python arithmetic, rounded to float32 at the end as its torch.Tensor(list).
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step / height, (np.arange(cols) + 0.5) * step / width,
                             indexing='ij')
        anchors = np.empty((rows, cols, len(sizes), 4))
        anchors[..., 0] = cx[..., None]
        anchors[..., 1] = cy[..., None]
        anchors[..., 2] = np.array(sizes) / width
        anchors[..., 3] = np.array(sizes) / height
        levels.append(anchors.reshape(-1, 4))
    return np.concatenate(levels).astype(np.float32)


def decode_boxes(offsets, priors):
    """Box offsets -> (x1, y1, x2, y2) relative to the image."""
    centres = priors[:, :2] + offsets[:, :2] * VARIANCES[0] * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(offsets[:, 2:] * VARIANCES[1])
    corners = centres - sizes / 2
    return np.concatenate([corners, sizes + corners], axis=1)


def decode_landmarks(offsets, priors):
    """Landmark offsets -> (n, 10) points (x, y, x, y, ...) relative to the image."""
    points = priors[:, None, :2] + offsets.reshape(-1, 5, 2) * VARIANCES[0] * priors[:, None, 2:]
    return points.reshape(-1, 10)


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes greedy non-maximum suppression keeps, best first, as torchvision.ops.nms on float32:
    a stable sort by score (ties keep their order), corners without the +1, and a box dropped when its IoU with a
    kept one exceeds the threshold (a NaN IoU drops nothing)."""
    boxes = np.asarray(boxes, np.float32)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-np.asarray(scores, np.float32), kind='stable')
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(np.float32(0), np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        height = np.maximum(np.float32(0), np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        overlap = width * height
        with np.errstate(invalid='ignore', divide='ignore'):  # empty boxes: NaN, kept as by torchvision
            iou = overlap / (areas[best] + areas[rest] - overlap)
        order = rest[~(iou.astype(np.float64) > iou_threshold)]  # torchvision compares in double
    return np.array(keep, np.int64)


def input_scale(height, width, use_origin_size=True):
    """The factor facexlib resizes a photo by before detection: 1, or the shorter side to 1600 capped by the longer
    side at 2150."""
    if use_origin_size:
        return 1
    scale = TARGET_SIZE / min(height, width)
    if np.round(scale * max(height, width)) > MAX_SIZE:
        scale = MAX_SIZE / max(height, width)
    return scale


def preprocess(image_bgr, use_origin_size=True):
    """(network input (1, h, w, 3) float32, resize factor) from a BGR photo, as facexlib's `transform` and mean
    subtraction."""
    image = np.asarray(image_bgr).astype(np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected a BGR image (h, w, 3), got shape {image.shape}')
    scale = input_scale(*image.shape[:2], use_origin_size)
    if scale != 1:
        image = cv2.resize(image, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return (image - MEAN_BGR)[None], scale


def detect_faces_within(detector, image_bgr, conf_threshold, max_pixels=MAX_DETECTION_PIXELS):
    """`detector.detect_faces(image_bgr, conf_threshold)`, on a copy of the photo shrunk (cv2's INTER_AREA) to about
    `max_pixels` pixels when it is larger, with boxes and landmarks scaled back to the photo's pixels, as facexlib's
    FaceRestoreHelper does with its `resize` option. Photos up to `max_pixels` are searched as they are."""
    height, width = image_bgr.shape[:2]
    if height * width <= max_pixels:
        return detector.detect_faces(image_bgr, conf_threshold)
    scale = np.sqrt(max_pixels / (height * width))
    size = max(1, int(width * scale)), max(1, int(height * scale))
    small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    detections = np.array(detector.detect_faces(small, conf_threshold), np.float32).reshape(-1, 15)
    factors = np.float32([width / size[0], height / size[1]])
    detections[:, :4] *= np.tile(factors, 2)
    detections[:, 5:] *= np.tile(factors, 5)
    return detections


class FaceDetector(FromOfficialWeights):
    """RetinaFace with its weights; the network compiles once per input shape.

    dtype: the network's compute dtype (parameters stay float32). `from_checkpoint` takes facexlib's
    detection_Resnet50_Final.pth or detection_mobilenet0.25_Final.pth; `from_pretrained` is the ResNet50 one, the
    official pipeline's detector.
    """
    RELEASE = 'detection_Resnet50_Final'

    def __init__(self, backbone, variables, *, dtype=jnp.float32):
        self.backbone = backbone
        self.model = RetinaFace(backbone, dtype)
        self.variables = jax.device_put(variables)
        self._forward = jax.jit(self.model.apply)

    @classmethod
    def from_state_dict(cls, state, **kwargs):
        return cls(*convert_retinaface(state), **kwargs)

    def network_outputs(self, inputs):
        """The network's (box offsets, class probabilities, landmark offsets) as numpy, for inputs as `preprocess`
        makes them."""
        return tuple(np.asarray(out) for out in self._forward(self.variables, jnp.asarray(inputs, jnp.float32)))

    def detect_faces(self, image_bgr, conf_threshold=0.8, nms_threshold=0.4, use_origin_size=True):
        """(n, 15) float32 rows [x1, y1, x2, y2, score, 10 landmark coordinates] in the photo's pixels, best first.

        image_bgr: (h, w, 3) BGR, uint8 as cv2.imread gives (or float in [0, 255]).
        """
        inputs, scale = preprocess(image_bgr, use_origin_size)
        height, width = inputs.shape[1:3]
        box_offsets, probabilities, landmark_offsets = (out[0] for out in self.network_outputs(inputs))
        scores = probabilities[:, 1]
        # The same numpy calls as facexlib: the comparison rounds a Python threshold to float32, and the reversed
        # default argsort decides the order of equal scores.
        chosen = np.nonzero(scores > conf_threshold)[0]
        chosen = chosen[np.argsort(scores[chosen])[::-1]]
        priors = prior_boxes(height, width)[chosen]
        boxes = decode_boxes(box_offsets[chosen], priors) * np.array([width, height] * 2, np.float32) / scale
        landmarks = (decode_landmarks(landmark_offsets[chosen], priors)
                     * np.array([width, height] * 5, np.float32) / scale)
        detections = np.concatenate([boxes, scores[chosen, None], landmarks], axis=1).astype(np.float32)
        return detections[nms(boxes, scores[chosen], nms_threshold)]
