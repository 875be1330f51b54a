"""ArcFace (identity loss) and the VGG feature extractor (perceptual and style losses) against the official
classes (gfpgan 1.3.8's ResNetArcFace, basicsr 1.4.2's VGGFeatureExtractor on torchvision 0.28's VGG layers),
with the converters both ways and the loaders of the released files.

Tolerances (fp32, CPU, highest matmul precision, random weights and batch-norm statistics): whole networks 1e-4
max abs, single blocks 1e-5; input gradients in float64 on both sides, 1e-8 relative (max abs error over the max
abs of the official gradient): the losses backpropagate through both networks into the generator.
"""
import copy
import types

import jax
import jax.numpy as jnp
import numpy as np
import official  # noqa: F401  (mends the official packages' imports; before basicsr and torchvision)
import pytest
import torch
from basicsr.archs import vgg_arch
from gfpgan.archs import arcface_arch
from parity_utils import max_abs, nhwc, randomize, state_dict_numpy
from torchvision.models import vgg as torchvision_vgg

from gfpgan_jax.convert import arcface as convert_arcface
from gfpgan_jax.convert import pretrained
from gfpgan_jax.convert import vgg as convert_vgg
from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.models import arcface
from gfpgan_jax.models.vgg import VGGFeatureExtractor, vgg_layer_names

NET_TOL = 1e-4
LAYER_TOL = 1e-5
GRAD_RTOL = 1e-8
GFPGAN_LAYERS = ('conv1_2', 'conv2_2', 'conv3_4', 'conv4_4', 'conv5_4')  # options/train_gfpgan_v1.yml
TORCHVISION_CONFIGS = {'vgg11': 'A', 'vgg13': 'B', 'vgg16': 'D', 'vgg19': 'E'}


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def relative_error(expected, got):
    return max_abs(expected, got) / float(np.max(np.abs(expected)))


def randomized(module, seed=0):
    """`randomize`, with running variances drawn from 0.5..2."""
    randomize(module, seed)
    generator = torch.Generator().manual_seed(seed)
    for norm in module.modules():
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            norm.running_var.uniform_(0.5, 2, generator=generator)
    return module


def assert_same_state(exported, state):
    assert exported.keys() == state.keys()
    assert all(np.array_equal(exported[key], state[key]) for key in state)


# ---- ArcFace ----

@pytest.fixture(scope='module')
def official_arcface():
    return randomized(arcface_arch.ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False))


@pytest.mark.parametrize('in_channels, planes, stride', [(32, 64, 2), (64, 64, 1)])
def test_ir_block(in_channels, planes, stride):
    downsample = None
    if stride != 1 or in_channels != planes:
        downsample = torch.nn.Sequential(torch.nn.Conv2d(in_channels, planes, 1, stride, bias=False),
                                         torch.nn.BatchNorm2d(planes))
    theirs = randomized(arcface_arch.IRBlock(in_channels, planes, stride, downsample, use_se=False))
    ours = arcface.IRBlock(planes, stride)
    x = randn(2, in_channels, 16, 16, seed=1)
    with torch.no_grad():
        expected = nhwc(theirs(x))
    variables = convert(state_dict_numpy(theirs), variable_shapes(ours, nhwc(x)), 'IRBlock')
    assert max_abs(expected, ours.apply(variables, nhwc(x))) < LAYER_TOL


def test_arcface_matches(official_arcface, tmp_path):
    """arcface_resnet18.pth's layout, read from a bare state dict saved through DataParallel (keys `module.*`),
    which basicsr's loader accepts."""
    path = tmp_path / 'arcface.pth'
    torch.save({f'module.{key}': value for key, value in official_arcface.state_dict().items()}, path)
    model, variables = pretrained.load_arcface(path)
    assert model == arcface.ResNetArcFace(layers=(2, 2, 2, 2))
    x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = official_arcface(x).numpy()
    got = jax.jit(model.apply)(variables, nhwc(x))
    assert got.shape == (2, 512)
    assert max_abs(expected, got) < NET_TOL
    assert_same_state(convert_arcface.export_arcface(variables), state_dict_numpy(official_arcface))


def test_arcface_input_gradient(official_arcface):
    variables = convert_arcface.convert_arcface(state_dict_numpy(official_arcface))
    theirs = copy.deepcopy(official_arcface).double()
    x = (torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1).double().requires_grad_()
    weights = randn(2, 512, seed=2).double()
    (theirs(x) * weights).sum().backward()
    with jax.enable_x64(True):
        model = arcface.ResNetArcFace(dtype=jnp.float64)
        wide = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)

        def weighted_sum(variables, faces, weights):
            return jnp.sum(model.apply(variables, faces) * weights)

        # The weights go in as arguments: closed over, XLA would spend seconds folding fc5 into constants.
        grad = jax.jit(jax.grad(weighted_sum, argnums=1))(wide, nhwc(x.detach()), weights.numpy())
    assert relative_error(nhwc(x.grad), grad) < GRAD_RTOL


def test_arcface_conversion_is_strict(official_arcface):
    state = state_dict_numpy(official_arcface)
    assert convert_arcface.detect_arcface(state, dtype=jnp.bfloat16) == arcface.ResNetArcFace((2, 2, 2, 2),
                                                                                             jnp.bfloat16)
    del state['layer2.0.downsample.1.running_var']
    state['layer1.0.se.fc.0.weight'] = np.zeros((4, 64), np.float32)
    state['layer3.1.prelu.weight'] = np.zeros(256, np.float32)
    with pytest.raises(ConversionError, match=r'^weights do not fit ResNetArcFace\(layers=\[2, 2, 2, 2\]\): 1 missing: '
                       r'batch_stats/layer2_0/downsample_1/var; 1 unused: layer1.0.se.fc.0.weight; 1 with the wrong '
                       r'shape: layer3.1.prelu.weight \(256,\) != \(1,\)'):
        convert_arcface.convert_arcface(state)
    with pytest.raises(ConversionError, match='not a ResNetArcFace state dict'):
        convert_arcface.detect_arcface({'conv1.weight': np.zeros((64, 1, 3, 3))})


def test_arcface_bad_input():
    with pytest.raises(ValueError, match=r'greyscale faces \(b, 128, 128, 1\), got shape \(1, 128, 128, 3\)'):
        jax.eval_shape(arcface.ResNetArcFace().init, jax.random.key(0), jnp.zeros((1, 128, 128, 3)))


# ---- VGG ----

def official_extractor(monkeypatch, layers, seed=0, **options):
    """basicsr's extractor on torchvision's VGG layers with random weights (it would load the ImageNet weights)."""
    vgg_type = options.get('vgg_type', 'vgg19')
    features = torchvision_vgg.make_layers(torchvision_vgg.cfgs[TORCHVISION_CONFIGS[vgg_type]])
    randomize(features, seed)
    # Only `features` is read; the classifier (over 100 M weights) is not built.
    monkeypatch.setattr(vgg_arch, 'vgg', types.SimpleNamespace(
        **{vgg_type: lambda pretrained: types.SimpleNamespace(features=features)}))
    monkeypatch.setattr(vgg_arch, 'VGG_PRETRAIN_PATH', '/nonexistent/vgg.pth')
    return vgg_arch.VGGFeatureExtractor(list(layers), **options), features


def torchvision_state(features):
    """torchvision's state dict of a VGG with these `features`, its classifier as placeholders (the converter
    leaves the classifier out by name, whatever it holds)."""
    state = {f'features.{key}': value for key, value in state_dict_numpy(features).items()}
    state.update({f'classifier.{index}.{name}': np.zeros(1, np.float32) for index in (0, 3, 6)
                  for name in ('weight', 'bias')})
    return state


@pytest.mark.parametrize('layers, options, size', [
    (GFPGAN_LAYERS, dict(use_input_norm=True, range_norm=True), 32),  # GFPGAN's perceptual loss
    (('relu1_1', 'pool2', 'conv3_3'), dict(vgg_type='vgg16', use_input_norm=False, pooling_stride=1), 12),
    (('conv2_1', 'relu4_2', 'pool4'), dict(vgg_type='vgg11', remove_pooling=True), 10),
])
def test_vgg_features_match(monkeypatch, layers, options, size):
    theirs, features = official_extractor(monkeypatch, layers, **options)
    model = VGGFeatureExtractor(layers, **options)
    variables = convert_vgg.convert_vgg(torchvision_state(features), model)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = theirs(x)
    got = jax.jit(model.apply)(variables, nhwc(x))
    assert got.keys() == expected.keys()
    assert max(max_abs(nhwc(expected[name]), got[name]) for name in expected) < NET_TOL


def test_vgg_input_gradient(monkeypatch):
    theirs, features = official_extractor(monkeypatch, GFPGAN_LAYERS, use_input_norm=True, range_norm=True)
    model = VGGFeatureExtractor(GFPGAN_LAYERS, range_norm=True)
    variables = convert_vgg.convert_vgg(torchvision_state(features), model)
    theirs = theirs.double()
    x = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).double().requires_grad_()
    out = theirs(x)
    weights = {name: randn(*out[name].shape, seed=i).double() for i, name in enumerate(GFPGAN_LAYERS)}
    sum((out[name] * weights[name]).sum() for name in GFPGAN_LAYERS).backward()
    with jax.enable_x64(True):
        wide = model.clone(dtype=jnp.float64)

        def weighted_sum(variables, images, weights):
            out = wide.apply(variables, images)
            return sum(jnp.sum(out[name] * weights[name]) for name in GFPGAN_LAYERS)

        grad = jax.jit(jax.grad(weighted_sum, argnums=1))(
            jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables), nhwc(x.detach()),
            {name: nhwc(w) for name, w in weights.items()})
    assert relative_error(nhwc(x.grad), grad) < GRAD_RTOL


def test_vgg_conversion(tmp_path):
    """torchvision's whole vgg19 file: the layers past the last requested and the classifier are left out by name;
    anything else is strict. Export gives back the tensors of the layers built."""
    features = randomize(torchvision_vgg.make_layers(torchvision_vgg.cfgs['E']))
    state = torchvision_state(features)
    path = tmp_path / 'vgg19.pth'
    torch.save({key: torch.from_numpy(value) for key, value in state.items()}, path)
    model, variables = pretrained.load_vgg(('conv3_4', 'conv2_2'), path)
    assert model.layers_built() == vgg_layer_names()[:vgg_layer_names().index('conv3_4') + 1]
    built = {key: value for key, value in state.items() if key.startswith('features.') and
             int(key.split('.')[1]) <= 16}
    assert_same_state(convert_vgg.export_vgg(variables), built)

    state['features.1.weight'] = np.zeros(1, np.float32)  # a ReLU holds no weights
    state['features.0.weight'] = state['features.0.weight'][:, :2]
    del state['features.16.bias']
    with pytest.raises(ConversionError, match=r"^weights do not fit vgg19 up to conv3_4: 1 missing: "
                       r"params/features_16/bias; 1 unused: features.1.weight; 1 with the wrong shape: "
                       r"features.0.weight \(3, 3, 2, 64\) != \(3, 3, 3, 64\)"):
        convert_vgg.convert_vgg(state, model)


@pytest.mark.parametrize('options, message', [
    (dict(layer_name_list=('conv6_1',)), r'layer_name_list must name layers of vgg19 \(conv1_1, '),
    (dict(layer_name_list=('conv1_1',), vgg_type='vgg19_bn'), 'vgg_type must be one of'),
    (dict(layer_name_list=()), 'layer_name_list must name layers'),
])
def test_vgg_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(VGGFeatureExtractor(**options).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
