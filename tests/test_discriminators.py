"""GFPGAN's discriminators and the pretrained-decoder load against the official classes (basicsr 1.4.2,
gfpgan 1.3.8), with the converters both ways and the loaders of the released files.

Tolerances (fp32, CPU, highest matmul precision, random weights with random biases): whole networks 1e-4 max abs
(their outputs are about unit size); gradients in float64 on both sides, 1e-8 relative (max abs error over the
max abs of the official gradient), for the input and every parameter.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import official
import pytest
import torch
from flax import traverse_util
from parity_utils import max_abs, nhwc, randomize, state_dict_numpy

from gfpgan_jax.convert import discriminators as convert
from gfpgan_jax.convert import generator as convert_generator
from gfpgan_jax.convert import pretrained
from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.files import releases
from gfpgan_jax.models.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from gfpgan_jax.models.options import CLEAN, ORIGINAL, ModelConfig

NET_TOL = 1e-4
GRAD_RTOL = 1e-8
TRAINING_RELEASES = ['StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k', 'arcface_resnet18', 'GFPGANv1_net_d',
                     'GFPGANv1_net_d_left_eye', 'GFPGANv1_net_d_right_eye', 'GFPGANv1_net_d_mouth', 'vgg19-dcbb9e9d']


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def official_discriminator(seed=0, **options):
    return randomize(official.stylegan2_arch.StyleGAN2Discriminator(**options), seed)


def official_component(seed=0):
    return randomize(official.gfpganv1_arch.FacialComponentDiscriminator(), seed)


def relative_error(expected, got):
    return max_abs(expected, got) / float(np.max(np.abs(expected)))


def assert_same_state(exported, state):
    assert exported.keys() == state.keys()
    assert all(np.array_equal(exported[key], state[key]) for key in state)


# ---- StyleGAN2Discriminator ----

@pytest.mark.parametrize('options, batch', [
    (dict(out_size=64, channel_multiplier=2, narrow=0.125), 4),  # one group of 4
    (dict(out_size=32, channel_multiplier=1, narrow=0.25, stddev_group=2), 6),  # 2 groups of 3 strided samples
    (dict(out_size=16, narrow=0.0625), 3),  # group = min(batch, 4) = 3
    (dict(out_size=8, narrow=0.125, resample_kernel=(1, 2, 1)), 1),
])
def test_stylegan2_discriminator_matches(options, batch):
    theirs = official_discriminator(**options)
    state = state_dict_numpy(theirs)
    model = StyleGAN2Discriminator(**options)
    x = randn(batch, 3, options['out_size'], options['out_size'], seed=1)
    with torch.no_grad():
        expected = theirs(x).numpy()
    got = jax.jit(model.apply)(convert.convert_stylegan2_discriminator(state, model), nhwc(x))
    assert got.shape == (batch, 1)
    assert max_abs(expected, got) < NET_TOL


def test_released_discriminator_layout(tmp_path):
    """GFPGANv1_net_d.pth's layout (out_size 512, channel multiplier 1) as basicsr saves it ({'params': state}):
    options read back, outputs, export."""
    options = dict(out_size=512, channel_multiplier=1)
    theirs = official_discriminator(**options)
    state = state_dict_numpy(theirs)
    path = tmp_path / 'net_d.pth'
    torch.save({'params': theirs.state_dict()}, path)
    model, variables = pretrained.load_stylegan2_discriminator(path)
    assert model == StyleGAN2Discriminator(**options)
    x = randn(1, 3, 512, 512, seed=1)
    with torch.no_grad():
        expected = theirs(x).numpy()
    assert max_abs(expected, jax.jit(model.apply)(variables, nhwc(x))) < NET_TOL
    assert_same_state(convert.export_stylegan2_discriminator(variables), state)


@pytest.mark.parametrize('options', [dict(out_size=64, channel_multiplier=2, narrow=0.125),
                                     dict(out_size=128, channel_multiplier=1, narrow=0.25),
                                     dict(out_size=16, narrow=0.5)])
def test_stylegan2_discriminator_options_and_export(options):
    state = state_dict_numpy(official_discriminator(**options))
    model = convert.detect_stylegan2_discriminator(state)
    # Below 64 px the multiplier shapes nothing and reads as the official default, 2.
    assert model == StyleGAN2Discriminator(**{'channel_multiplier': 2, 'narrow': 1.0, **options})
    assert_same_state(convert.export_stylegan2_discriminator(convert.convert_stylegan2_discriminator(state, model)),
                      state)


def test_stylegan2_discriminator_gradients():
    """Input (the R1 penalty's) and every parameter's gradient, float64 on both sides, through the minibatch
    standard deviation of a group of 4."""
    options = dict(out_size=64, channel_multiplier=1, narrow=0.25)
    theirs = official_discriminator(seed=2, **options)
    variables = convert.convert_stylegan2_discriminator(state_dict_numpy(theirs), StyleGAN2Discriminator(**options))
    theirs = theirs.double()
    x = randn(4, 3, 64, 64, seed=3).double().requires_grad_()
    weights = randn(4, 1, seed=4).double()
    (theirs(x) * weights).sum().backward()

    with jax.enable_x64(True):
        model = StyleGAN2Discriminator(**options, dtype=jnp.float64)

        def weighted_sum(params, images):
            return jnp.sum(model.apply({'params': params}, images) * jnp.asarray(weights.numpy()))

        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables['params'])
        param_grads, input_grad = jax.jit(jax.grad(weighted_sum, argnums=(0, 1)))(params, nhwc(x.detach()))
        param_grads = convert.export_stylegan2_discriminator({'params': jax.tree.map(np.asarray, param_grads)})
    errors = {'input': relative_error(nhwc(x.grad), input_grad)}
    errors.update({key: relative_error(param.grad.numpy(), param_grads[key])
                   for key, param in theirs.named_parameters()})
    assert len(errors) == len(param_grads) + 1
    assert max(errors.values()) < GRAD_RTOL, errors


def test_r1_penalty_parameter_gradients():
    """The R1 penalty (mean squared norm of the input gradient) and its gradient with respect to every parameter:
    second order, through basicsr's double backward of the fused leaky ReLU; float64."""
    options = dict(out_size=16, channel_multiplier=1, narrow=0.0625)
    theirs = official_discriminator(seed=2, **options)
    variables = convert.convert_stylegan2_discriminator(state_dict_numpy(theirs), StyleGAN2Discriminator(**options))
    theirs = theirs.double()
    x = randn(4, 3, 16, 16, seed=3).double().requires_grad_()
    input_grad, = torch.autograd.grad(theirs(x).sum(), x, create_graph=True)
    penalty = input_grad.pow(2).sum((1, 2, 3)).mean()
    penalty.backward()

    with jax.enable_x64(True):
        model = StyleGAN2Discriminator(**options, dtype=jnp.float64)

        def r1_penalty(params, images):
            grad = jax.grad(lambda images: jnp.sum(model.apply({'params': params}, images)))(images)
            return jnp.mean(jnp.sum(grad ** 2, axis=(1, 2, 3)))

        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables['params'])
        ours, param_grads = jax.jit(jax.value_and_grad(r1_penalty))(params, nhwc(x.detach()))
        param_grads = convert.export_stylegan2_discriminator({'params': jax.tree.map(np.asarray, param_grads)})
    errors = {'penalty': abs(float(ours) - penalty.item()) / penalty.item()}
    for key, param in theirs.named_parameters():
        # The input gradient of a piecewise-linear map does not depend on its biases: those after the minibatch
        # standard deviation get no gradient (or none at all, for the last).
        if param.grad is None or not param.grad.any():
            assert not np.any(param_grads[key]), key
        else:
            errors[key] = relative_error(param.grad.numpy(), param_grads[key])
    assert len(errors) == len(param_grads) - 2
    assert max(errors.values()) < GRAD_RTOL, errors


def test_minibatch_group_must_divide_the_batch():
    model = StyleGAN2Discriminator(out_size=8, narrow=0.0625)
    x = jnp.zeros((6, 8, 8, 3))
    with pytest.raises(ValueError, match=r'divisible by its group of 4 .* got a batch of 6'):
        jax.eval_shape(model.init, jax.random.key(0), x)


@pytest.mark.parametrize('model, shape, message', [
    (StyleGAN2Discriminator(out_size=8), (1, 16, 16, 3), r'takes NHWC RGB images \(b, 8, 8, 3\)'),
    (StyleGAN2Discriminator(out_size=8), (1, 3, 8, 8), r'got shape \(1, 3, 8, 8\)'),
    (StyleGAN2Discriminator(out_size=48), (1, 48, 48, 3), 'power of two'),
    (FacialComponentDiscriminator(), (1, 3, 8, 8), r'takes NHWC RGB images \(b, h, w, 3\)'),
])
def test_bad_input_is_a_clear_error(model, shape, message):
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


def test_stylegan2_discriminator_conversion_is_strict():
    options = dict(out_size=16, narrow=0.0625)
    state = state_dict_numpy(official_discriminator(**options))
    del state['final_linear.1.bias']
    state['conv_body.1.conv2.3.weight'] = state['conv_body.1.conv2.1.weight']
    state['final_conv.0.weight'] = state['final_conv.0.weight'][:, 1:]
    with pytest.raises(ConversionError, match=r'^weights do not fit StyleGAN2Discriminator\(out_size=16, '
                       r'channel_multiplier=2, narrow=0.0625\): 1 missing: params/final_linear_1/bias; 1 unused: '
                       r'conv_body.1.conv2.3.weight; 1 with the wrong shape: '
                       r'final_conv.0.weight \(3, 3, 32, 32\) != \(3, 3, 33, 32\)'):
        convert.convert_stylegan2_discriminator(state, StyleGAN2Discriminator(**options))


def test_bf16_compute():
    """bf16 compute, fp32 parameters: fp32 logits within 5% of the fp32 network's range."""
    options = dict(out_size=16, narrow=0.125)
    state = state_dict_numpy(official_discriminator(**options))
    variables = convert.convert_stylegan2_discriminator(state, StyleGAN2Discriminator(**options))
    component = convert.convert_component_discriminator(state_dict_numpy(official_component()))
    x = nhwc(randn(4, 3, 16, 16, seed=1))
    for model, weights in ((StyleGAN2Discriminator(**options), variables),
                           (FacialComponentDiscriminator(), component)):
        full, half = (jax.jit(m.apply)(weights, x) for m in (model, model.clone(dtype=jnp.bfloat16)))
        if isinstance(model, FacialComponentDiscriminator):  # (logits, features)
            full, half = full[0], half[0]
        assert half.dtype == jnp.float32
        assert max_abs(full, half) < 0.05 * float(jnp.max(jnp.abs(full)))


# ---- FacialComponentDiscriminator ----

def test_component_discriminator_matches_with_features(tmp_path):
    theirs = official_component()
    path = tmp_path / 'net_d_mouth.pth'
    torch.save({'params': theirs.state_dict()}, path)
    model, variables = pretrained.load_component_discriminator('mouth', path)
    x = randn(2, 3, 40, 24, seed=1)
    with torch.no_grad():
        expected, expected_feats = theirs(x, return_feats=True)
        assert theirs(x)[1] is None
    out, feats = jax.jit(model.apply, static_argnames='return_feats')(variables, nhwc(x), return_feats=True)
    assert out.shape == (2, 10, 6, 1) and [f.shape for f in feats] == [(2, 20, 12, 128), (2, 10, 6, 256)]
    assert max_abs(nhwc(expected), out) < NET_TOL
    assert max(max_abs(nhwc(e), f) for e, f in zip(expected_feats, feats)) < NET_TOL
    assert model.apply(variables, nhwc(x))[1] is None
    assert_same_state(convert.export_component_discriminator(variables), state_dict_numpy(theirs))


def test_component_discriminator_gradients():
    """Through the logits and the two style-loss features: input and every parameter, float64."""
    theirs = official_component(seed=2)
    variables = convert.convert_component_discriminator(state_dict_numpy(theirs))
    theirs = theirs.double()
    x = randn(2, 3, 16, 16, seed=3).double().requires_grad_()
    out, feats = theirs(x, return_feats=True)
    weights = [randn(*t.shape, seed=4 + i).double() for i, t in enumerate([out, *feats])]
    sum((t * w).sum() for t, w in zip([out, *feats], weights)).backward()

    with jax.enable_x64(True):
        model = FacialComponentDiscriminator(jnp.float64)

        def weighted_sum(params, images):
            out, feats = model.apply({'params': params}, images, return_feats=True)
            return sum(jnp.sum(t * jnp.asarray(nhwc(w))) for t, w in zip([out, *feats], weights))

        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables['params'])
        param_grads, input_grad = jax.jit(jax.grad(weighted_sum, argnums=(0, 1)))(params, nhwc(x.detach()))
        param_grads = convert.export_component_discriminator({'params': jax.tree.map(np.asarray, param_grads)})
    errors = {'input': relative_error(nhwc(x.grad), input_grad)}
    errors.update({key: relative_error(param.grad.numpy(), param_grads[key])
                   for key, param in theirs.named_parameters()})
    assert len(errors) == len(param_grads) + 1
    assert max(errors.values()) < GRAD_RTOL, errors


def test_component_discriminator_conversion_is_strict():
    state = state_dict_numpy(official_component())
    state['conv4.0.weight'] = state.pop('conv4.1.weight')  # a downsampling layer's conv sits after its blur
    state['final_conv.0.bias'] = np.zeros(2, np.float32)
    with pytest.raises(ConversionError, match=r'^weights do not fit FacialComponentDiscriminator: 1 missing: '
                       r'params/conv4/conv/kernel; 1 unused: conv4.0.weight; 1 with the wrong shape: '
                       r'final_conv.0.bias \(2,\) != \(1,\)'):
        convert.convert_component_discriminator(state)
    with pytest.raises(ValueError, match='part must be one of left_eye, right_eye, mouth'):
        pretrained.load_component_discriminator('nose')


# ---- the released files ----

def test_training_releases_are_fetched_under_their_official_names(monkeypatch, tmp_path):
    fetched = []

    def fake_fetch(url, path, *args, **kwargs):
        fetched.append((url, path))
        torch.save({'params': official_component().state_dict()}, path)
        return path

    monkeypatch.setenv('GFPGAN_JAX_HOME', str(tmp_path))
    monkeypatch.setattr(releases, 'fetch', fake_fetch)
    for name in TRAINING_RELEASES:
        assert releases.HELPER_WEIGHTS[name].rsplit('/', 1)[1] == f'{name}.pth'
    assert releases.HELPER_WEIGHTS['vgg19-dcbb9e9d'] == 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth'
    model, variables = pretrained.load_component_discriminator('left_eye')
    assert fetched == [(releases.HELPER_WEIGHTS['GFPGANv1_net_d_left_eye'],
                        os.path.join(tmp_path, 'GFPGANv1_net_d_left_eye.pth'))]
    pretrained.load_component_discriminator('left_eye')
    assert len(fetched) == 1  # cached


# ---- the pretrained StyleGAN2 decoder (decoder_load_path) ----

SMALL_GENERATOR = dict(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.25)
ARCHS = {
    ORIGINAL: (lambda: official.gfpganv1_arch.GFPGANv1, lambda: official.stylegan2_arch.StyleGAN2Generator),
    CLEAN: (lambda: official.gfpganv1_clean_arch.GFPGANv1Clean,
            lambda: official.stylegan2_clean_arch.StyleGAN2GeneratorClean),
}


def saved_decoder(arch, path, seed=0):
    decoder = randomize(ARCHS[arch][1]()(**SMALL_GENERATOR), seed)
    ema = {key: tensor.clone() for key, tensor in decoder.state_dict().items()}
    torch.save({'params_ema': ema, 'params': randomize(decoder, seed + 1).state_dict()}, path)
    return path


@pytest.mark.parametrize('arch', [ORIGINAL, CLEAN])
def test_load_decoder_as_decoder_load_path(arch, tmp_path):
    """Our variables with the decoder file loaded are exactly the official GFPGAN's after its constructor loaded
    the same file (the rest of both is the official's own initialisation)."""
    path = saved_decoder(arch, tmp_path / 'stylegan2.pth')
    options = dict(SMALL_GENERATOR, input_is_latent=True, different_w=True, sft_half=True)
    torch.manual_seed(0)
    theirs = ARCHS[arch][0]()(decoder_load_path=str(path), **options)
    config = ModelConfig(arch=arch, **options)
    _, expected = convert_generator.convert_state_dict(state_dict_numpy(theirs), config)
    # Ours before loading: the official's U-Net, a decoder of zeros.
    before = {collection: {name: jax.tree.map(np.zeros_like, tree) if name == 'stylegan_decoder' else tree
                           for name, tree in trees.items()} for collection, trees in expected.items()}
    loaded = traverse_util.flatten_dict(pretrained.load_pretrained_decoder(config, before, path))
    expected = traverse_util.flatten_dict(expected)
    assert loaded.keys() == expected.keys()
    assert all(np.array_equal(loaded[p], expected[p]) for p in expected)


def test_load_decoder_is_strict(tmp_path):
    config = ModelConfig(arch=ORIGINAL, input_is_latent=True, different_w=True, sft_half=True, **SMALL_GENERATOR)
    variables = traverse_util.unflatten_dict(
        {path: np.zeros(shape, np.float32) for path, shape in convert_generator.variable_shapes(config).items()})
    state = pretrained.read_state_dict(saved_decoder(ORIGINAL, tmp_path / 'stylegan2.pth'))
    del state['noises.noise2']
    state['to_rgbs.7.bias'] = state['to_rgb1.bias']
    state['style_mlp.1.weight'] = state['style_mlp.1.weight'][:, :16]
    with pytest.raises(ConversionError, match=r'^weights do not fit the decoder of original out_size=32: 1 missing: '
                       r'noises.noise2; 1 unused: to_rgbs.7.bias; 1 with the wrong shape: style_mlp.1.weight'):
        convert_generator.load_decoder(config, variables, state)
