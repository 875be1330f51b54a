"""Parity of the clean architecture (GFPGAN v1.2-v1.4) with the official gfpgan 1.3.8 classes.

Tolerances (fp32, CPU, highest matmul precision): single layers 1e-5 max abs, whole networks 1e-4 max abs on
inputs in [-1, 1], gradients (in float64) 1e-8 relative to their largest entry.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import official
from flax import traverse_util

from gfpgan_jax.convert import generator as convert
from gfpgan_jax.models.generator import build_model, trainable_mask
from gfpgan_jax.models import gfpgan_clean, stylegan2_clean
from gfpgan_jax.ops import resample
from parity_utils import bf16_psnr, example_faces, max_abs, nhwc, randomize, state_dict_numpy

LAYER_TOL = 1e-5
NET_TOL = 1e-4
V14 = dict(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, input_is_latent=True,
           different_w=True, narrow=1, sft_half=True)


def official_clean(seed=0, **options):
    return randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(fix_decoder=False, **options), seed)


def run_official(module, x):
    """Image, intermediate RGBs and the decoder's latents, with the stored noise."""
    captured = {}
    hook = module.stylegan_decoder.register_forward_hook(lambda m, args, out: captured.update(latent=out[1]))
    with torch.no_grad():
        image, rgbs = module(x, return_latents=True, randomize_noise=False)
    hook.remove()
    return nhwc(image), [nhwc(r) for r in rgbs], captured['latent'].numpy()


def run_ours(module, x, noise='fixed'):
    state = state_dict_numpy(module)
    config = convert.detect_config(state, input_is_latent=module.input_is_latent)
    config, variables = convert.convert_state_dict(state, config)
    out = jax.jit(lambda v, x: build_model(config).apply(v, x, noise=noise))(variables, nhwc(x))
    return config, variables, out


def random_faces(batch, size, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def assert_network_parity(module, x):
    image, rgbs, latent = run_official(module, x)
    _, _, out = run_ours(module, x)
    assert max_abs(image, out.image) < NET_TOL
    assert len(rgbs) == len(out.rgbs)
    for theirs, ours in zip(rgbs, out.rgbs):
        assert max_abs(theirs, ours) < NET_TOL
    assert max_abs(latent, out.latent) < NET_TOL


def test_v14_layout_full_network():
    module = official_clean(**V14)
    state = state_dict_numpy(module)
    assert len(state) == 285 and sum(v.size for v in state.values()) == 87_143_276  # the released v1.4 file
    assert_network_parity(module, random_faces(1, 512))


@pytest.mark.parametrize('options', [
    dict(sft_half=False, different_w=False, input_is_latent=False, channel_multiplier=1),
    dict(sft_half=True, different_w=True, input_is_latent=False, channel_multiplier=2),
    dict(sft_half=False, different_w=True, input_is_latent=True, channel_multiplier=2, num_mlp=2),
    dict(sft_half=True, different_w=False, input_is_latent=True, channel_multiplier=1, out_size=32),
])
def test_small_configurations(options):
    options = dict(dict(out_size=64, num_style_feat=32, narrow=0.25), **options)
    assert_network_parity(official_clean(seed=1, **options), random_faces(2, options['out_size'], seed=1))


def test_detects_options_and_exports_back_exactly():
    for options in (V14, dict(out_size=64, num_style_feat=32, narrow=0.125, channel_multiplier=1, num_mlp=3,
                              different_w=False, sft_half=False, input_is_latent=True)):
        state = state_dict_numpy(official_clean(**options))
        config = convert.detect_config(state)
        expected = {k: v for k, v in options.items() if k != 'input_is_latent'}
        assert {k: getattr(config, k) for k in expected} == expected
        config, variables = convert.convert_state_dict(state, config)
        back = convert.export_state_dict(config, variables)
        assert back.keys() == state.keys()
        for key in state:
            np.testing.assert_array_equal(back[key], state[key], err_msg=key)


def test_strict_conversion_lists_missing_unused_and_misshapen():
    state = state_dict_numpy(official_clean(out_size=32, num_style_feat=16, narrow=0.125))
    config = convert.detect_config(state)
    broken = dict(state)
    del broken['final_conv.bias']
    broken['extra.weight'] = np.zeros(3, np.float32)
    broken['toRGB.0.weight'] = np.zeros((3, 1, 1, 1), np.float32)
    with pytest.raises(convert.ConversionError) as error:
        convert.convert_state_dict(broken, config)
    message = str(error.value)
    assert '1 missing: final_conv.bias' in message and '1 unused: extra.weight' in message
    assert 'with the wrong shape: toRGB.0.weight' in message and '\n' not in message


def test_noise_modes():
    module = official_clean(out_size=32, num_style_feat=16, narrow=0.125)
    config, variables = convert.convert_state_dict(state_dict_numpy(module))
    model = build_model(config)
    x = nhwc(random_faces(2, 32))

    def run(noise, key=0, v=variables):
        return model.apply(v, x, noise=noise, rngs={'noise': jax.random.key(key)}).image

    assert max_abs(run('random', 0), run('random', 0)) == 0
    assert max_abs(run('random', 0), run('random', 1)) > 1e-3
    assert max_abs(run('random'), run('fixed')) > 1e-3
    silent = dict(variables, noise=jax.tree.map(jnp.zeros_like, variables['noise']))
    assert max_abs(run('none'), run('fixed', v=silent)) < 1e-6
    assert max_abs(run('none'), run('fixed')) > 1e-3


def test_gradients_match_autograd():
    """Input and parameter gradients of a weighted image sum, compared in float64 on both sides: in fp32 a
    pre-activation within rounding of zero can take the other leaky-ReLU slope and move whole gradient maps."""
    module = official_clean(out_size=32, num_style_feat=16, narrow=0.125, sft_half=True, different_w=True,
                            input_is_latent=True)
    config, variables = convert.convert_state_dict(state_dict_numpy(module))
    module = module.double()
    x = random_faces(2, 32).double().requires_grad_(True)
    weights = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    image, _ = module(x, randomize_noise=False)
    (image * weights).sum().backward()
    torch_grads = {k: p.grad.numpy() for k, p in module.named_parameters() if p.grad is not None}

    with jax.enable_x64(True):
        variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        model = build_model(config, jnp.float64)

        def loss(params, faces):
            out = model.apply({**variables, 'params': params}, faces, noise='fixed')
            return jnp.sum(out.image * nhwc(weights))

        grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(variables['params'], nhwc(x.detach()))
        ours = convert.export_state_dict(config, {'params': jax.tree.map(np.float64, grad_params)})
        theirs = nhwc(x.grad)
        assert max_abs(theirs, grad_x) < 1e-8 * np.abs(theirs).max()
    assert ours.keys() >= torch_grads.keys()
    for key, grad in torch_grads.items():
        assert max_abs(grad, ours[key]) < 1e-8 * max(np.abs(grad).max(), 1e-12), key


# --- single layers -------------------------------------------------------------------------------------------

def test_bilinear_resampling_matches_interpolate():
    x = torch.randn(2, 5, 8, 6)
    for scale, ours in ((2, resample.upsample_bilinear_2x), (0.5, resample.downsample_bilinear_2x)):
        theirs = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
        assert max_abs(nhwc(theirs), ours(nhwc(x))) < LAYER_TOL


def layer_params(layer, ours, *inputs):
    """Our params for one official layer, through the converter's own key and array rules."""
    shapes = jax.eval_shape(lambda: ours.init(jax.random.key(0), *inputs))
    shapes = {path: leaf.shape for path, leaf in traverse_util.flatten_dict(shapes).items()}
    flat = {}
    for key, array in state_dict_numpy(layer).items():
        path = convert.flax_path(key, convert.clean, shapes)
        flat[path] = convert.to_flax_array(array, path)
        assert flat[path].shape == shapes[path], key
    assert flat.keys() == shapes.keys()
    return traverse_util.unflatten_dict(flat)


def assert_layer_parity(theirs_module, ours_module, *torch_inputs):
    with torch.no_grad():
        theirs = theirs_module(*torch_inputs)
    inputs = [nhwc(t) if t.ndim == 4 else t.numpy() for t in torch_inputs]
    ours = ours_module.apply(layer_params(theirs_module, ours_module, *inputs), *inputs)
    assert max_abs(nhwc(theirs), ours) < LAYER_TOL


@pytest.mark.parametrize('batch', [1, 2])  # one sample modulates the kernel, a batch the activations
@pytest.mark.parametrize('sample_mode,demodulate,kernel_size', [
    (None, True, 3), ('upsample', True, 3), (None, False, 1)])
def test_modulated_conv(sample_mode, demodulate, kernel_size, batch):
    theirs = randomize(official.stylegan2_clean_arch.ModulatedConv2d(
        6, 5, kernel_size, 7, demodulate=demodulate, sample_mode=sample_mode))
    ours = stylegan2_clean.ModulatedConv(5, kernel_size, demodulate, upsample=sample_mode == 'upsample')
    assert_layer_parity(theirs, ours, torch.randn(batch, 6, 8, 8), torch.randn(batch, 7))


def test_style_conv():
    theirs = randomize(official.stylegan2_clean_arch.StyleConv(6, 5, 3, 7, sample_mode='upsample'))
    assert_layer_parity(theirs, stylegan2_clean.StyleConv(5, upsample=True),
                        torch.randn(2, 6, 4, 4), torch.randn(2, 7), torch.randn(2, 1, 8, 8))


def test_to_rgb():
    theirs = randomize(official.stylegan2_clean_arch.ToRGB(5, 7))
    assert_layer_parity(theirs, stylegan2_clean.ToRGB(), torch.randn(2, 5, 8, 8), torch.randn(2, 7),
                        torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize('mode', ['down', 'up'])
def test_res_block(mode):
    theirs = randomize(official.gfpganv1_clean_arch.ResBlock(6, 4, mode=mode))
    assert_layer_parity(theirs, gfpgan_clean.ResBlock(4, down=mode == 'down'), torch.randn(2, 6, 8, 8))


def test_bf16_close_to_fp32():
    config, variables = convert.convert_state_dict(state_dict_numpy(official_clean(**V14)))
    assert bf16_psnr(config, variables, example_faces()) >= 40


def test_dataclass_config_roundtrip():
    config = convert.detect_config(state_dict_numpy(official_clean(out_size=32, num_style_feat=16, narrow=0.125)))
    assert type(config).from_json(config.to_json()) == config
    assert dataclasses.replace(config, input_is_latent=False).input_is_latent is False


def test_trainable_mask_freezes_only_the_decoder():
    config = convert.detect_config(state_dict_numpy(official_clean(out_size=32, num_style_feat=16, narrow=0.125)))
    params = convert.variable_shapes(config)
    params = traverse_util.unflatten_dict({p[1:]: 0 for p in params if p[0] == 'params'})
    for fix_decoder in (True, False):
        mask = traverse_util.flatten_dict(trainable_mask(params, fix_decoder))
        assert mask.keys() == traverse_util.flatten_dict(params).keys()
        assert all(train == (not fix_decoder or path[0] != 'stylegan_decoder') for path, train in mask.items())
        assert any(mask.values())
