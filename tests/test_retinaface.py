"""Parity of the RetinaFace detector with facexlib 0.3.0's (`init_detection_model`'s two backbones).

Random weights, with BatchNorm statistics measured on a photo so that activations keep a trained net's scale.
Tolerances (fp32, CPU, highest matmul precision): single blocks 1e-5 max abs, whole networks 1e-4 max abs,
detections 1e-3 px; measured figures are in the tests.
"""
import functools
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import official  # noqa: F401  (mends torchvision's import before facexlib's)
from facexlib.detection import retinaface as official_retinaface
from facexlib.detection.retinaface_utils import py_cpu_nms
from flax import traverse_util

from gfpgan_jax.convert.retinaface import convert_retinaface
from gfpgan_jax.inference import detection
from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.models import retinaface
from parity_utils import max_abs, nhwc, state_dict_numpy

# facexlib builds its ResNet-50 with torchvision's deprecated `pretrained=False`.
pytestmark = pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated",
                                        'ignore:Arguments other than a weight enum')

BLOCK_TOL = 1e-5
NET_TOL = 1e-4
PIXEL_TOL = 1e-3
BACKBONES = ('resnet50', 'mobile0.25')
PHOTO = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned', 'grace_hopper.png')


def photo():
    """A real BGR photo, cropped to 512 x 384 so that a swapped height and width would show."""
    return cv2.imread(PHOTO)[:, 64:448]


def randomized(module, calibration, seed=0):
    """Random parameters, with running statistics those of `calibration` (NCHW) so that activations keep their scale.

    BatchNorm gains near 0.5 and shifts near 0.5 keep most ReLUs open: with unit gains and zero shifts a random
    net is chaotic, and float rounding differences grow several times a stage (to 2e-4 at the output here).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            fresh = torch.randn(param.shape, generator=generator)
            # Weights at the scale of torch's default initialisation, but not drawn from the global generator.
            param.copy_(fresh / (3 * param[0].numel()) ** 0.5 if param.ndim > 1 else 0.1 * fresh)
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.add_(0.5)
                layer.bias.add_(0.5)
                layer.reset_running_stats()
                layer.momentum = None  # a cumulative average: one batch gives its own statistics
        module.train()(calibration)
    return module.eval()


def photo_input():
    """The photo as facexlib's network sees it: NCHW, less the mean."""
    return torch.from_numpy((photo().astype(np.float32) - detection.MEAN_BGR).transpose(2, 0, 1)[None].copy())


# Seeds whose random weights leave more than 20 of the photo's boxes with well-separated scores; see `threshold`.
SEEDS = {'resnet50': 1, 'mobile0.25': 2}


@functools.cache
def randomized_nets(backbone):
    """The randomized official net and our detector with its weights."""
    net = official_retinaface.RetinaFace(network_name=backbone, half=False, phase='test', device='cpu')
    net = randomized(net, photo_input(), SEEDS[backbone])
    return net, detection.FaceDetector.from_state_dict(state_dict_numpy(net))


@pytest.fixture(scope='module', autouse=True)
def release_nets():
    yield
    randomized_nets.cache_clear()


@pytest.mark.parametrize('backbone', BACKBONES)
def test_network_outputs(backbone):
    official_net, detector = randomized_nets(backbone)
    # 100 x 132 gives feature maps 13 x 17, 7 x 9 and 4 x 5: the FPN's upsampling is not an exact 2x.
    x = photo_input()[:, :, 200:300, 100:232]
    with torch.no_grad():
        expected = official_net(x)
    outputs = detector.network_outputs(nhwc(x))
    # Measured: boxes 4.4e-6 / 6.4e-6, scores 1.6e-6 / 1.3e-6, landmarks 5.4e-6 / 5.7e-6 (resnet50 / mobile0.25).
    for name, theirs, mine in zip(('boxes', 'scores', 'landmarks'), expected, outputs):
        assert theirs.shape == mine.shape
        assert max_abs(theirs, mine) < NET_TOL, name


@pytest.mark.parametrize('backbone, block', [('resnet50', 'ssh1'), ('mobile0.25', 'ssh1'),
                                             ('resnet50', 'body.layer2.0')])
def test_single_block(backbone, block):
    module = randomized_nets(backbone)[0].get_submodule(block)
    if block == 'ssh1':
        channels = module.conv3X3[0].in_channels
        ours = retinaface.SSH(channels)
    else:
        channels = module.conv1.in_channels
        ours = retinaface.Bottleneck(module.conv1.out_channels, stride=module.stride)
    x = torch.randn(1, channels, 13, 17, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = nhwc(module(x))
    variables = convert(state_dict_numpy(module), variable_shapes(ours, nhwc(x)))
    # Measured: SSH 3.6e-6 (256 wide) / 3.3e-6 (64 wide), bottleneck 3.3e-6.
    assert max_abs(expected, ours.apply(variables, nhwc(x))) < BLOCK_TOL


def threshold(detector, image, use_origin_size=True, most=60, gap=2e-5):
    """(threshold, k): a detection threshold that the best k <= `most` boxes pass, k as large as keeps their scores
    and the next one `gap` apart. Ours agree with facexlib's to 3e-6; the order of closer scores is float
    rounding's to decide."""
    scores = detector.network_outputs(detection.preprocess(image, use_origin_size)[0])[1][0, :, 1]
    scores = np.sort(scores)[::-1][:most + 1]
    close = np.nonzero(scores[:-1] - scores[1:] < gap)[0]
    count = int(close[0]) if len(close) else most
    assert count > 20, f'only {count} boxes with well-separated scores: choose another seed'
    return float(scores[count - 1] + scores[count]) / 2, count


@pytest.mark.parametrize('backbone', BACKBONES)
def test_detect_faces_like_facexlib(backbone):
    official_net, detector = randomized_nets(backbone)
    image = photo()
    conf_threshold, candidates = threshold(detector, image)
    with torch.no_grad():
        expected = official_net.detect_faces(image, conf_threshold=conf_threshold, nms_threshold=0.4)
    detections = detector.detect_faces(image, conf_threshold=conf_threshold, nms_threshold=0.4)
    assert 10 < len(expected) < candidates  # NMS removed some
    assert detections.dtype == np.float32 and detections.shape == expected.shape
    # Measured: 2.7e-4 px (resnet50, 15 of 31 boxes kept), 4.0e-4 px (mobile0.25, 38 of 53), in the same order.
    assert max_abs(expected, detections) < PIXEL_TOL


def test_detect_faces_resized():
    official_net, detector = randomized_nets('mobile0.25')
    # 512 x 360 is scaled so that its longer side is 2150, its shorter less than 1600.
    image = photo()[:, 12:372]
    conf_threshold, candidates = threshold(detector, image, use_origin_size=False)
    with torch.no_grad():
        expected = official_net.detect_faces(image, conf_threshold=conf_threshold, use_origin_size=False)
    detections = detector.detect_faces(image, conf_threshold=conf_threshold, use_origin_size=False)
    assert official_net.resize == 2150 / 512
    assert 10 < len(expected) < candidates
    # Measured: 3.1e-4 px (30 of 40 boxes kept).
    assert detections.shape == expected.shape and max_abs(expected, detections) < PIXEL_TOL


def test_equal_scores_like_facexlib(monkeypatch):
    """Network outputs made up so that many boxes tie: facexlib's reversed argsort puts the last of equal scores
    first, and NMS keeps that order."""
    official_net, detector = randomized_nets('mobile0.25')
    rng = np.random.default_rng(4)
    count = len(detection.prior_boxes(32, 32))  # 42: 4 x 4, 2 x 2 and 1 x 1 positions, two sizes each
    scores = np.full(count, 0.1, np.float32)
    scores[1:16:2] = 0.9  # the 32-pixel anchors of the first two rows, each overlapping its neighbours
    scores[[20, 33]] = [0.95, 0.7]
    outputs = (rng.normal(0, 0.1, (1, count, 4)).astype(np.float32), np.stack([1 - scores, scores], -1)[None],
               rng.normal(0, 0.1, (1, count, 10)).astype(np.float32))
    monkeypatch.setattr(official_net, 'forward', lambda inputs: tuple(torch.from_numpy(out) for out in outputs))
    monkeypatch.setattr(detector, 'network_outputs', lambda inputs: outputs)
    image = np.zeros((32, 32, 3), np.uint8)
    expected = official_net.detect_faces(image, conf_threshold=0.5)
    detections = detector.detect_faces(image, conf_threshold=0.5)
    assert 3 < len(expected) < 10 and np.count_nonzero(expected[:, 4] == np.float32(0.9)) > 1
    assert detections.shape == expected.shape and max_abs(expected, detections) < 1e-4


@pytest.mark.parametrize('shape', [(40, 50), (60, 40), (30, 30)])
@pytest.mark.parametrize('use_origin_size', [True, False])
def test_preprocess_like_facexlib(shape, use_origin_size):
    image = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    expected, expected_scale = randomized_nets('mobile0.25')[0].transform(image, use_origin_size)
    inputs, scale = detection.preprocess(image, use_origin_size)
    assert scale == expected_scale
    np.testing.assert_array_equal(inputs, nhwc(expected - randomized_nets('mobile0.25')[0].mean_tensor))


@pytest.mark.parametrize('height, width', [(100, 132), (64, 64), (33, 7)])
def test_prior_boxes_like_facexlib(height, width):
    expected = official_retinaface.PriorBox(official_retinaface.generate_config('resnet50'), (height, width))
    np.testing.assert_array_equal(detection.prior_boxes(height, width), expected.forward().numpy())


def test_nms_like_torchvision():
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 50, (300, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (300, 2)).astype(np.float32)], axis=1)
    scores = rng.permutation(300).astype(np.float32) / 300
    kept = detection.nms(boxes, scores, 0.4)
    assert 10 < len(kept) < 200
    np.testing.assert_array_equal(kept, [int(i) for i in py_cpu_nms(np.c_[boxes, scores], 0.4)])


def test_nms_ties_and_threshold():
    # Equal scores: the earlier box is kept (torchvision's stable sort). An IoU of exactly 0.5 is not above 0.5.
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60]], np.float32)
    np.testing.assert_array_equal(detection.nms(boxes, np.array([0.5, 0.5, 0.9, 0.1], np.float32), 0.5), [2, 0, 3])
    assert len(detection.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)) == 0


def official_state(backbone):
    net = official_retinaface.RetinaFace(network_name=backbone, half=False, phase='test', device='cpu')
    return {key: value.numpy() for key, value in net.state_dict().items()}


@pytest.mark.parametrize('backbone', BACKBONES)
def test_conversion_detects_backbone_and_strips_module_prefix(backbone):
    state = official_state(backbone)
    name, variables = convert_retinaface(state)
    assert name == backbone
    prefixed_name, prefixed = convert_retinaface({'module.' + key: value for key, value in state.items()})
    assert prefixed_name == backbone
    flat, flat_prefixed = traverse_util.flatten_dict(variables), traverse_util.flatten_dict(prefixed)
    assert flat.keys() == flat_prefixed.keys()
    assert all(np.array_equal(flat[path], flat_prefixed[path]) for path in flat)
    kernel = state['ClassHead.0.conv1x1.weight']
    assert np.array_equal(variables['params']['ClassHead_0']['conv1x1']['kernel'], kernel.transpose(2, 3, 1, 0))


def test_conversion_is_strict():
    state = official_state('mobile0.25')
    del state['fpn.merge1.1.running_var']
    state['body.fc.weight'] = np.zeros((1000, 256), np.float32)
    with pytest.raises(ConversionError, match=r'^weights do not fit RetinaFace \(mobile0.25\): 1 missing: '
                       r'batch_stats/fpn/merge1_1/var; 1 unused: body.fc.weight$'):
        convert_retinaface(state)
    with pytest.raises(ConversionError, match='not a RetinaFace state dict'):
        convert_retinaface({'conv.weight': np.zeros((1, 1, 1, 1), np.float32)})


def test_from_checkpoint(tmp_path):
    state = official_retinaface.RetinaFace(network_name='mobile0.25', half=False, phase='test',
                                           device='cpu').state_dict()
    path = tmp_path / 'detection_mobilenet0.25_Final.pth'
    torch.save({'module.' + key: value for key, value in state.items()}, path)
    detector = detection.FaceDetector.from_checkpoint(path)
    assert detector.backbone == 'mobile0.25'
    kernel = detector.variables['params']['body']['stage1_0_0']['kernel']
    assert np.array_equal(kernel, state['body.stage1.0.0.weight'].numpy().transpose(2, 3, 1, 0))
    assert detector.detect_faces(np.zeros((32, 32, 3), np.uint8)).shape[1] == 15


def test_bfloat16_compute():
    detector = randomized_nets('mobile0.25')[1]
    x = nhwc(photo_input()[:, :, 200:232, 100:132])
    half = detection.FaceDetector(detector.backbone, detector.variables, dtype=jnp.bfloat16)
    outputs = half.network_outputs(x)
    assert all(out.dtype == np.float32 for out in outputs)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(half.variables))
    # bfloat16 keeps two to three significant digits. Measured: 6.7e-3.
    assert max_abs(detector.network_outputs(x)[1], outputs[1]) < 0.05
