"""Parity of ParseNet and of the parse-based paste mask with facexlib 0.3.0.

Tolerances (fp32, CPU, highest matmul precision): single blocks 1e-5 max abs, whole networks 1e-4 max abs (their
logits reach about 6). The paste mask is compared with the one the official helper's own code path computes; see
`assert_masks_agree` for why a few parse labels may differ.
"""
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import official  # noqa: F401  (mends the official packages' imports; before facexlib)
from facexlib.parsing import parsenet as official_parsenet
from facexlib.utils import face_restoration_helper

from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.models import parsenet
from gfpgan_jax.convert.parsenet import convert_parsenet
from gfpgan_jax.inference.parsing import FaceParser, to_parsenet_input
from parity_utils import calibrate_batch_norms, max_abs, nhwc, randomize, state_dict_numpy

LAYER_TOL = 1e-5
NET_TOL = 1e-4
# The layout init_parsing_model loads strictly, so that of parsing_parsenet.pth: keys (with the batch norms'
# step counters) and values.
RELEASED_KEYS, RELEASED_VALUES = 238, 21_319_930
FACE = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned', 'grace_hopper.png')


def batch_norms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def randomized(module, seed=0):
    """`randomize`, with running variances drawn from 0.5..2."""
    randomize(module, seed)
    generator = torch.Generator().manual_seed(seed)
    for norm in batch_norms(module):
        norm.running_var.uniform_(0.5, 2, generator=generator)
    return module


def random_images(shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def run_ours(model, module, x):
    variables = convert(state_dict_numpy(module), variable_shapes(model, nhwc(x)), 'the test model')
    return jax.jit(model.apply)(variables, nhwc(x))


@pytest.mark.parametrize('block, out_channels, options', [
    ('ConvLayer', 64, dict(scale='none', norm_type='bn', relu_type='LeakyReLU')),
    ('ConvLayer', 64, dict(scale='down', norm_type='in', relu_type='prelu')),
    ('ConvLayer', 64, dict(scale='up', norm_type='gn', relu_type='selu')),
    ('ConvLayer', 64, dict(kernel_size=4, norm_type='pixel', relu_type='relu')),
    ('ConvLayer', 64, dict(use_pad=False)),
    ('ResidualBlock', 64, dict(relu_type='leakyrelu', norm_type='bn', scale='down')),
    ('ResidualBlock', 64, dict(relu_type='prelu', norm_type='bn', scale='up')),
    ('ResidualBlock', 64, dict(relu_type='prelu', norm_type='bn', scale='none')),
    ('ResidualBlock', 32, dict(relu_type='selu', norm_type='in', scale='none')),  # the identity shortcut
])
def test_blocks(block, out_channels, options):
    theirs = getattr(official_parsenet, block)(32, out_channels, **options)
    ours = getattr(parsenet, block)(out_channels, **options)
    x = random_images((2, 32, 16, 16))
    with torch.no_grad():
        expected = nhwc(randomized(theirs)(x))
    assert max_abs(run_ours(ours, theirs, x), expected) < LAYER_TOL


@pytest.mark.parametrize('options', [
    # The official layer pattern (4 halvings, 10 body blocks, 4 doublings, widths 64..256) at 64 pixels.
    dict(in_size=64, out_size=64, min_feat_size=4),
    dict(in_size=32, out_size=64, min_feat_size=8, base_ch=32, res_depth=2, ch_range=(16, 64), parsing_ch=5,
         relu_type='PReLU', norm_type='in'),
])
def test_small_networks(options):
    theirs = randomized(official_parsenet.ParseNet(**options))
    x = random_images((1, 3, options['in_size'], options['in_size']))
    calibrate_batch_norms(theirs, x)
    with torch.no_grad():
        logits, image = theirs(x)
    out = run_ours(parsenet.ParseNet(**options), theirs, x)
    assert out.logits.shape == nhwc(logits).shape
    assert max_abs(out.logits, nhwc(logits)) < NET_TOL
    assert max_abs(out.image, nhwc(image)) < NET_TOL


class RecordingCv2:
    """cv2 as the official helper sees it, keeping the parse mask it warps (its only warp with flags=3)."""

    def __init__(self):
        self.masks = []

    def __getattr__(self, name):
        return getattr(cv2, name)

    def warpAffine(self, src, matrix, size, **kwargs):  # noqa: N802 (cv2's name)
        if kwargs.get('flags') == cv2.INTER_AREA:
            self.masks.append(src.copy())
        return cv2.warpAffine(src, matrix, size, **kwargs)


def run_official_paste(module, face):
    """What the official helper's paste-back computes with `module` as its parser, for `face` pasted onto a
    copy of itself: the network's input and outputs, and the paste mask."""
    helper = object.__new__(face_restoration_helper.FaceRestoreHelper)
    helper.input_img = face
    helper.upscale_factor = 1
    helper.restored_faces = [face]
    helper.inverse_affine_matrices = [np.eye(2, 3)]
    helper.use_parse = True
    helper.face_parse = module
    helper.device = torch.device('cpu')
    captured = {}
    hook = module.register_forward_hook(
        lambda m, args, out: captured.update(input=nhwc(args[0]), logits=nhwc(out[0]), image=nhwc(out[1])))
    recording = RecordingCv2()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(face_restoration_helper, 'cv2', recording)
        helper.paste_faces_to_input_image()
    hook.remove()
    (mask,) = recording.masks
    return dict(captured, mask=mask)


def face(size):
    """The example face, uint8 BGR (size, size, 3)."""
    return cv2.resize(cv2.imread(FACE), (size, size), interpolation=cv2.INTER_AREA)


def network_input(face_bgr):
    return torch.from_numpy(face_bgr[:, :, ::-1].transpose(2, 0, 1) / 127.5 - 1).float()[None]


def face_parser_module(**options):
    """An official ParseNet for 512-pixel faces, random but calibrated on a real face."""
    module = randomized(official_parsenet.ParseNet(in_size=512, out_size=512, **options))
    return calibrate_batch_norms(module, network_input(face(128)))


def differing_labels(our_labels, official_logits):
    return int(np.sum(our_labels != np.argmax(official_logits[0], -1)))


def assert_masks_agree(ours, theirs, differing):
    """Where both sides parse every pixel alike, the masks come from the same cv2 calls and are equal. A pixel
    whose best two logits are closer than the two networks' rounding difference may be labelled differently
    (allowed: 1 in 10,000 of the 512x512 parse); flipping one between a kept and a dropped class moves the
    blurred mask by at most 1.8e-3 (measured for a pixel anywhere, edges included)."""
    assert differing <= 512 * 512 // 10_000
    assert ours.dtype == np.float64 and 0 < ours.max() <= 1 and ours.min() == 0
    assert 0.05 < np.mean(ours > 0.5) < 0.95  # the parse keeps some of the face and drops some
    assert max_abs(ours, theirs) <= differing * 2e-3


@pytest.fixture(scope='module')
def release_layout():
    """The official release's ParseNet with random weights: the module and its state dict."""
    module = face_parser_module()
    return dict(module=module, state=state_dict_numpy(module))


def test_release_network(release_layout):
    """The released layout on a real face at 128 pixels: at 512 one forward pass takes about 15 s on two CPU
    cores (measured there once through the official helper: logits 1.8e-5 max abs, 1 of 262,144 parse labels
    differing, mask 9.7e-4 max abs)."""
    x = network_input(face(128))
    with torch.no_grad():
        logits, image = release_layout['module'](x)
    out = FaceParser.from_state_dict(release_layout['state']).apply(nhwc(x))
    assert max_abs(out.logits, nhwc(logits)) < NET_TOL
    assert max_abs(out.image, nhwc(image)) < NET_TOL


@pytest.mark.parametrize('face_size', [512, 300])
def test_paste_mask_matches_the_official_helper(face_size):
    """`face_paste_mask` end to end on a real face, with a slimmer network than the release's at the same
    512-pixel parse size; `test_release_network` checks the released layout."""
    options = dict(base_ch=16, ch_range=(16, 32), res_depth=2)
    module = face_parser_module(**options)
    restored = face(face_size)
    theirs = run_official_paste(module, restored)
    assert np.array_equal(to_parsenet_input(restored), theirs['input'])
    parser = FaceParser.from_state_dict(state_dict_numpy(module), parsenet.ParseNet(**options))
    labels = parser.labels(restored)
    assert len(np.unique(labels)) > 10  # calibrated, the random network parses the face into many classes
    mask = parser.face_paste_mask(restored)
    assert mask.shape == (face_size, face_size)
    assert_masks_agree(mask, theirs['mask'], differing_labels(labels, theirs['logits']))


def test_conversion_is_strict(release_layout):
    state = release_layout['state']
    assert len(state) == RELEASED_KEYS and sum(v.size for v in state.values()) == RELEASED_VALUES
    variables = convert_parsenet(state)
    assert variables['params']['encoder_1']['conv1']['conv2d']['kernel'].shape == (3, 3, 64, 128)
    assert variables['batch_stats']['body_9']['conv2']['norm']['norm']['var'].shape == (256,)
    missing = {k: v for k, v in state.items() if k != 'body.3.conv1.norm.norm.running_var'}
    with pytest.raises(ConversionError, match=r'1 missing: batch_stats/body_3/conv1/norm/norm/var'):
        convert_parsenet(missing)
    with pytest.raises(ConversionError, match=r'1 unused: out_mask_conv\.extra\.weight'):
        convert_parsenet(dict(state, **{'out_mask_conv.extra.weight': np.zeros(3, np.float32)}))
    wrong = dict(state, **{'out_mask_conv.conv2d.bias': np.zeros(18, np.float32)})
    with pytest.raises(ConversionError, match=r'1 with the wrong shape: out_mask_conv\.conv2d\.bias'):
        convert_parsenet(wrong)


def test_bf16_compute_keeps_fp32_parameters_and_outputs():
    model = parsenet.ParseNet(in_size=32, out_size=32, min_feat_size=8, res_depth=1, dtype=jnp.bfloat16)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {np.dtype(np.float32)}
    assert out.logits.dtype == out.image.dtype == jnp.float32 and out.logits.shape == (1, 32, 32, 19)
