"""The original GFPGANv1 (release v1) and its StyleGAN2 layers against the official PyTorch classes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import official
import pytest
import torch
from flax import traverse_util
from parity_utils import bf16_psnr, example_faces, max_abs, nhwc, randomize, state_dict_numpy, tame_rgb_heads

from gfpgan_jax.convert import generator as convert
from gfpgan_jax.models.generator import build_model
from gfpgan_jax.models.options import ORIGINAL, ModelConfig
from gfpgan_jax.convert import original
from gfpgan_jax.models import gfpgan_v1, stylegan2
from gfpgan_jax.ops import upfirdn2d

LAYER_TOL = 1e-5
# Whole networks: max abs error per unit of output scale, max(1, max |official|): 1e-4 absolute for outputs
# within [-1, 1]. Raw random weights put the 512 px image at |x| ~ 40, where fp32 accumulation-order differences
# alone (~3e-6 relative after 14 layers) exceed 1e-4 absolute; the release-layout test tames its RGB heads.
NETWORK_TOL = 1e-4
GRAD_RTOL = 1e-8  # float64 on both sides
TAPS = (1, 3, 3, 1)
ref_stylegan2 = official.stylegan2_arch
ref_upfirdn2d = official.stylegan2_arch.upfirdn2d

V1_OPTIONS = dict(out_size=512, num_style_feat=512, channel_multiplier=1, num_mlp=8, input_is_latent=True,
                  different_w=True, narrow=1.0, sft_half=True)  # the released GFPGANv1.pth
SMALL_OPTIONS = [
    dict(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=2, input_is_latent=True, different_w=True,
         narrow=0.25, sft_half=True),
    dict(out_size=64, num_style_feat=64, channel_multiplier=2, num_mlp=2, input_is_latent=False,
         different_w=False, narrow=0.125, sft_half=False),
    dict(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, input_is_latent=False,
         different_w=False, narrow=0.125, sft_half=True),
    dict(out_size=32, num_style_feat=48, channel_multiplier=2, num_mlp=2, input_is_latent=True, different_w=False,
         narrow=0.25, sft_half=False),
]
# Not different_w without input_is_latent: the official style MLP then adds its fused bias along the latent axis
# (basicsr's CPU path fails on the shapes; its CUDA kernel indexes the bias by batch and latent position).


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def lone_layer_variables(torch_layer, flax_layer, *inputs, at=''):
    """`flax_layer`'s variables holding `torch_layer`'s weights, renamed by the original layout's converter as if
    the layer sat at key prefix `at` of GFPGANv1 (where its nn.Sequential indices are renamed)."""
    template = jax.eval_shape(lambda: flax_layer.init(jax.random.key(0), *inputs))
    template = {path: leaf.shape for path, leaf in traverse_util.flatten_dict(template).items()}
    prefix = convert.flax_path(at + 'placeholder.leaf', original, {})[1:-2] if at else ()
    shapes = {(path[0], *prefix, *path[1:]): shape for path, shape in template.items()}
    flat = {}
    for key, array in state_dict_numpy(torch_layer).items():
        path = convert.flax_path(at + key, original, shapes)
        flat[(path[0], *path[1 + len(prefix):])] = convert.to_flax_array(array, path)
    assert {path: array.shape for path, array in flat.items()} == template
    return traverse_util.unflatten_dict(flat)


def assert_layer_parity(torch_layer, flax_layer, torch_inputs, at=''):
    """Run both on the same inputs (images NCHW for torch, NHWC for us) and compare."""
    torch_layer = randomize(torch_layer)
    ours = [jnp.asarray(nhwc(t)) if t.ndim == 4 else jnp.asarray(t.numpy()) for t in torch_inputs]
    variables = lone_layer_variables(torch_layer, flax_layer, *ours, at=at)
    with torch.no_grad():
        expected = torch_layer(*torch_inputs)
    expected = nhwc(expected) if expected.ndim == 4 else expected.numpy()
    got = jax.jit(flax_layer.apply)(variables, *ours)
    assert got.shape == expected.shape
    error = max_abs(expected, got)
    assert error < LAYER_TOL, error


# ---- upfirdn2d ----

@pytest.mark.parametrize('up, down, pad', [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (-1, 2)),
                                           (3, 1, (0, -2))])
def test_upfirdn2d_matches_basicsr(up, down, pad):
    x, kernel = randn(2, 5, 9, 9), randn(4, 4, seed=1)  # an asymmetric kernel shows whether it is flipped
    expected = nhwc(ref_upfirdn2d(x, kernel, up=up, down=down, pad=pad))
    got = upfirdn2d.upfirdn2d(jnp.asarray(nhwc(x)), kernel.numpy(), up=up, down=down, pad=pad)
    error = max_abs(expected, got)
    assert error < LAYER_TOL, error


@pytest.mark.parametrize('torch_resample, ours', [
    (ref_stylegan2.UpFirDnUpsample(TAPS), functools.partial(upfirdn2d.upsample_fir, taps=TAPS)),
    (ref_stylegan2.UpFirDnSmooth(TAPS, upsample_factor=2, kernel_size=3),
     functools.partial(upfirdn2d.blur_after_upsample, taps=TAPS, conv_kernel_size=3)),
    (ref_stylegan2.UpFirDnSmooth(TAPS, downsample_factor=2, kernel_size=3),
     functools.partial(upfirdn2d.blur_before_downsample, taps=TAPS, conv_kernel_size=3)),
    (ref_stylegan2.UpFirDnSmooth(TAPS, downsample_factor=2, kernel_size=1),
     functools.partial(upfirdn2d.blur_before_downsample, taps=TAPS, conv_kernel_size=1)),
], ids=['upsample', 'blur_after_upsample', 'blur_before_downsample_3x3', 'blur_before_downsample_1x1'])
def test_resampling_helpers_match_basicsr(torch_resample, ours):
    x = randn(2, 4, 8, 8)
    expected = nhwc(torch_resample(x))
    got = ours(jnp.asarray(nhwc(x)))
    error = max_abs(expected, got)
    assert error < LAYER_TOL, error


# ---- single layers ----

def test_equal_linear_with_lr_mul_and_fused_activation():
    assert_layer_parity(ref_stylegan2.EqualLinear(24, 16, lr_mul=0.01, activation='fused_lrelu'),
                        stylegan2.EqualLinear(16, lr_mul=0.01, fused_lrelu=True), [randn(3, 24)])


def test_equal_conv2d():
    assert_layer_parity(ref_stylegan2.EqualConv2d(8, 12, 3, padding=1),
                        stylegan2.EqualConv2d(12, 3, padding=1), [randn(2, 8, 8, 8)])


@pytest.mark.parametrize('kernel_size, activate', [(3, True), (1, False)], ids=['conv2', 'skip'])
def test_downsampling_conv_layer(kernel_size, activate):
    torch_layer = ref_stylegan2.ConvLayer(8, 12, kernel_size, downsample=True, bias=activate, activate=activate)
    ours = gfpgan_v1.ConvLayer(12, kernel_size, downsample=True, activate=activate)
    part = 'conv2' if activate else 'skip'
    assert_layer_parity(torch_layer, ours, [randn(2, 8, 16, 16)], at=f'conv_body_down.0.{part}.')


@pytest.mark.parametrize('batch', [1, 2])  # one sample modulates the kernel, a batch the activations
@pytest.mark.parametrize('upsample, demodulate, kernel_size', [(True, True, 3), (False, True, 3), (False, False, 1)],
                         ids=['upsample', 'plain', 'to_rgb_style'])
def test_modulated_conv2d(upsample, demodulate, kernel_size, batch):
    torch_layer = ref_stylegan2.ModulatedConv2d(8, 12, kernel_size, 16, demodulate=demodulate,
                                                sample_mode='upsample' if upsample else None)
    ours = stylegan2.ModulatedConv2d(12, kernel_size, demodulate=demodulate, upsample=upsample)
    assert_layer_parity(torch_layer, ours, [randn(batch, 8, 8, 8), randn(batch, 16, seed=1)])


def test_style_conv_with_upsample_and_noise():
    ours = stylegan2.StyleConv(12, upsample=True)
    assert_layer_parity(ref_stylegan2.StyleConv(8, 12, 3, 16, sample_mode='upsample'), ours,
                        [randn(2, 8, 8, 8), randn(2, 16, seed=1), randn(2, 1, 16, 16, seed=2)])


def test_to_rgb_with_upsampled_skip():
    assert_layer_parity(ref_stylegan2.ToRGB(8, 16), stylegan2.ToRGB(),
                        [randn(2, 8, 16, 16), randn(2, 16, seed=1), randn(2, 3, 8, 8, seed=2)])


def test_res_block():
    assert_layer_parity(ref_stylegan2.ResBlock(8, 12), gfpgan_v1.ResBlock(12), [randn(2, 8, 16, 16)],
                        at='conv_body_down.0.')


def test_res_up_block():
    assert_layer_parity(official.gfpganv1_arch.ResUpBlock(8, 12), gfpgan_v1.ResUpBlock(12), [randn(2, 8, 8, 8)],
                        at='conv_body_up.0.')


# ---- whole network ----

def official_model(options, seed=0):
    return randomize(official.gfpganv1_arch.GFPGANv1(fix_decoder=False, **options), seed=seed)


def official_forward(model, x):
    """Image, intermediate RGBs and the decoder's per-layer latents, with the stored noise."""
    latents = []
    decoder = model.stylegan_decoder
    hooks = [
        decoder.register_forward_pre_hook(lambda _, args, kwargs: (args, {**kwargs, 'return_latents': True}),
                                          with_kwargs=True),
        decoder.register_forward_hook(lambda _, args, out: latents.append(out[1])),
    ]
    try:
        with torch.no_grad():
            image, rgbs = model(x, randomize_noise=False)
    finally:
        for hook in hooks:
            hook.remove()
    return nhwc(image), [nhwc(rgb) for rgb in rgbs], latents[0].numpy()


def input_image(size, batch=2, seed=3):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def our_forward(state, options, x):
    config, variables = convert.convert_state_dict(state, ModelConfig(arch=ORIGINAL, **options))
    model = build_model(config)
    return jax.jit(functools.partial(model.apply, noise='fixed'))(variables, jnp.asarray(nhwc(x)))


def expected_config(options):
    """What detection can recover: below 64 px the channel multiplier shapes no tensor (it reads 2), and
    input_is_latent is not in the weights (it reads the ModelConfig default)."""
    readable = dict(options, input_is_latent=ModelConfig.input_is_latent)
    if options['out_size'] < 64:
        readable['channel_multiplier'] = 2
    return ModelConfig(arch=ORIGINAL, **readable)


def scaled_error(expected, got):
    return max_abs(expected, got) / max(1.0, float(np.max(np.abs(expected))))


def assert_network_parity(model, state, options, batch=2):
    x = input_image(options['out_size'], batch)
    image, rgbs, latent = official_forward(model, x)
    ours = our_forward(state, options, x)
    errors = {'image': scaled_error(image, ours.image), 'latent': scaled_error(latent, ours.latent)}
    assert len(ours.rgbs) == len(rgbs)
    errors.update({f'rgb{rgb.shape[1]}': scaled_error(rgb, got) for rgb, got in zip(rgbs, ours.rgbs)})
    assert max(errors.values()) < NETWORK_TOL, errors


@pytest.fixture(scope='module')
def v1_release():
    # With its RGB heads tamed the image spans about [-1, 1], so the tolerance is 1e-4 absolute there.
    model = tame_rgb_heads(official_model(V1_OPTIONS))
    return model, state_dict_numpy(model)


def test_v1_release_layout_parity(v1_release):
    assert_network_parity(*v1_release, V1_OPTIONS, batch=1)  # the small configs cover batching


def test_v1_release_layout_detect_and_export(v1_release):
    _, state = v1_release
    assert original.matches(state) and not convert.clean.matches(state)
    assert convert.detect_config(state) == expected_config(V1_OPTIONS)
    config, variables = convert.convert_state_dict(state)
    exported = convert.export_state_dict(config, variables)
    assert exported.keys() == state.keys()
    assert all(np.array_equal(exported[key], state[key]) for key in state)


@pytest.mark.parametrize('options', SMALL_OPTIONS, ids=lambda o: '-'.join(f'{k}={v}' for k, v in o.items()))
def test_small_configs(options):
    model = official_model(options, seed=1)
    state = state_dict_numpy(model)
    assert_network_parity(model, state, options)
    assert convert.detect_config(state) == expected_config(options)
    exported = convert.export_state_dict(*convert.convert_state_dict(state, expected_config(options)))
    assert exported.keys() == state.keys()
    assert all(np.array_equal(exported[key], state[key]) for key in state)


# ---- gradients ----

GRAD_KEYS = ['final_linear.weight', 'conv_body_down.0.conv2.2.bias', 'conv_body_up.1.conv2.weight',
             'condition_scale.1.2.bias', 'stylegan_decoder.style_mlp.1.weight',
             'stylegan_decoder.style_convs.0.modulated_conv.weight', 'stylegan_decoder.to_rgbs.1.bias']


def test_gradients_match_torch_autograd():
    """Compared in float64 on both sides: in fp32 a pre-activation within rounding of zero can take the other
    leaky-ReLU slope and move whole gradient maps."""
    # input_is_latent=False puts the style MLP, with its lr multiplier, on the path too.
    options = dict(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=2, input_is_latent=False,
                   different_w=False, narrow=0.25, sft_half=True)
    model = official_model(options, seed=2)
    config, variables = convert.convert_state_dict(state_dict_numpy(model), ModelConfig(arch=ORIGINAL, **options))
    model = model.double()
    x = input_image(options['out_size'], seed=4).double().requires_grad_()
    weights = randn(2, 3, options['out_size'], options['out_size'], seed=5).double()
    image, _ = model(x, randomize_noise=False)
    (image * weights).sum().backward()

    with jax.enable_x64(True):
        variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        net = build_model(config, jnp.float64)

        def weighted_sum(params, image_nhwc):
            out = net.apply({'params': params, 'noise': variables['noise']}, image_nhwc, noise='fixed')
            return jnp.sum(out.image * jnp.asarray(nhwc(weights)))

        param_grads, input_grad = jax.jit(jax.grad(weighted_sum, argnums=(0, 1)))(
            variables['params'], jnp.asarray(nhwc(x.detach())))
        param_grads = convert.export_state_dict(config, {'params': jax.tree.map(np.asarray, param_grads)})
        input_grad = np.asarray(input_grad)
    torch_params = dict(model.named_parameters())

    def relative_error(expected, got):
        return max_abs(expected, got) / float(np.max(np.abs(expected)))

    errors = {'input': relative_error(nhwc(x.grad), input_grad)}
    errors.update({key: relative_error(torch_params[key].grad.numpy(), param_grads[key]) for key in GRAD_KEYS})
    assert max(errors.values()) < GRAD_RTOL, errors


def test_bf16_close_to_fp32():
    """bf16 against fp32 on the bundled photos, with the image range of a trained model (see tame_rgb_heads)."""
    state = state_dict_numpy(tame_rgb_heads(official_model(V1_OPTIONS)))
    config, variables = convert.convert_state_dict(state, ModelConfig(arch=ORIGINAL, **V1_OPTIONS))
    assert bf16_psnr(config, variables, example_faces()) >= 40
