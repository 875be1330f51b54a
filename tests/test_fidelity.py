"""The fidelity control: SFT modulation weakened towards none, against the official decoder given the same weakened
modulation; fidelity 1 is the official output; one compiled program serves every value.

Tolerances (fp32, CPU, highest matmul precision): whole networks 1e-4 max abs per unit of output scale. The
default (fidelity None) runs the official program unchanged, which tests/test_gfpgan_clean.py and test_gfpgan_v1.py
hold to the official output; a traced fidelity of 1 computes the same numbers in a differently fused program,
within fp32 rounding (1e-5 here).
"""
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch

import official
from gfpgan_jax.convert import generator as convert
from gfpgan_jax.inference.fidelity import check_fidelity
from gfpgan_jax.inference.restorer import FaceRestorer, to_model_input, to_uint8
from gfpgan_jax.models.generator import build_model
from parity_utils import nhwc, randomize, state_dict_numpy, tame_rgb_heads

NET_TOL = 1e-4
SMALL = dict(out_size=32, num_style_feat=32, narrow=0.25, num_mlp=2, input_is_latent=True, different_w=True,
             sft_half=True, fix_decoder=False)
ARCHS = {  # as released: clean with channel multiplier 2 (v1.2-v1.4), original with 1 (v1)
    'clean': lambda: official.gfpganv1_clean_arch.GFPGANv1Clean(channel_multiplier=2, **SMALL),
    'original': lambda: tame_rgb_heads(official.gfpganv1_arch.GFPGANv1(channel_multiplier=1, **SMALL)),
}


class Ours(NamedTuple):
    model: nn.Module
    variables: dict
    image: Callable  # image(variables, x, fidelity), compiled

    def at(self, x, fidelity):
        return np.asarray(self.image(self.variables, nhwc(x), np.float32(fidelity)))  # as restorers pass it


@pytest.fixture(scope='module', params=sorted(ARCHS))
def networks(request):
    """(the official module, `Ours`) with the same random weights."""
    module = randomize(ARCHS[request.param](), seed=5)
    state = state_dict_numpy(module)
    config, variables = convert.convert_state_dict(state, convert.detect_config(state, input_is_latent=True))
    model = build_model(config)
    return module, Ours(model, variables, jax.jit(lambda v, x, w: model.apply(v, x, noise='fixed', fidelity=w).image))


@pytest.fixture(scope='module')
def faces():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def official_with_modulation(module, x, fidelity):
    """The official forward pass with its SFT conditions replaced on their way into the decoder: weakened by
    `fidelity` (scale * w + 1 - w, shift * w), or none at all for None (the decoder driven by the style code
    alone)."""
    def weaken(_, args):
        style_code, conditions = args
        if fidelity is None:
            return style_code, []
        return style_code, [c * fidelity + (1 - fidelity) if i % 2 == 0 else c * fidelity
                            for i, c in enumerate(conditions)]

    hook = module.stylegan_decoder.register_forward_pre_hook(weaken)
    try:
        with torch.no_grad():
            return nhwc(module(x, randomize_noise=False)[0])
    finally:
        hook.remove()


def scaled_error(expected, got):
    return float(np.max(np.abs(expected - got)) / max(1.0, np.max(np.abs(expected))))


@pytest.mark.parametrize('fidelity', [0.0, 0.3, 0.75])
def test_weakened_modulation_matches_the_official_decoder(networks, faces, fidelity):
    module, ours = networks
    assert scaled_error(official_with_modulation(module, faces, fidelity), ours.at(faces, fidelity)) < NET_TOL


def test_fidelity_zero_is_the_decoder_without_modulation(networks, faces):
    module, ours = networks
    assert scaled_error(official_with_modulation(module, faces, None), ours.at(faces, 0.0)) < NET_TOL


def test_fidelity_one_is_the_official_output(networks, faces):
    module, ours = networks
    with torch.no_grad():
        official_image = nhwc(module(faces, randomize_noise=False)[0])
    default = np.asarray(jax.jit(lambda v, x: ours.model.apply(v, x, noise='fixed').image)(ours.variables, nhwc(faces)))
    assert scaled_error(official_image, default) < NET_TOL
    assert scaled_error(default, ours.at(faces, 1.0)) < 1e-5  # traced, as a restorer runs a chosen value
    assert np.abs(ours.at(faces, 0.5) - default).max() > 1e-2  # and the control does something


def test_one_program_for_every_fidelity(networks, faces):
    _, ours = networks
    for value in (0.0, 0.4, 1.0):
        ours.at(faces, value)
    assert ours.image._cache_size() == 1


@pytest.mark.parametrize('value', [-0.1, 1.5, float('nan')])
def test_a_fidelity_outside_zero_to_one_is_refused(networks, faces, value):
    _, ours = networks
    with pytest.raises(ValueError, match='fidelity must be a number in'):
        jax.eval_shape(lambda: ours.model.apply(ours.variables, nhwc(faces), noise='fixed', fidelity=value))


def test_a_restorer_restores_at_a_fidelity():
    module = randomize(ARCHS['clean'](), seed=6)
    restorer = FaceRestorer.from_state_dict(state_dict_numpy(module), noise='fixed')
    model = restorer.model
    faces = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    official_faces = restorer.restore(faces)
    np.testing.assert_array_equal(restorer.restore(faces, fidelity=1.0), official_faces)  # the official program
    half = restorer.restore(faces, fidelity=0.5)
    restorer.restore(faces, fidelity=0.2)
    expected = to_uint8(jax.jit(lambda v, x: model.apply(v, x, noise='fixed', fidelity=0.5).image)(
        restorer.variables, to_model_input(faces)))
    assert np.abs(half.astype(int) - np.asarray(expected, int)).max() <= 1  # fp32 rounding straddling a .5
    assert np.abs(half.astype(int) - official_faces.astype(int)).max() > 10
    assert restorer._restore_uint8._cache_size() == 2  # the official program, and one for every other value


@pytest.mark.parametrize('value', ['0.5', True, 2, -0.5])
def test_check_fidelity_refuses_what_is_not_a_fidelity(value):
    with pytest.raises(ValueError, match='fidelity must be a number from 0 to 1'):
        check_fidelity(value)
    assert check_fidelity(None) is None and check_fidelity(1) is None and check_fidelity(0) == 0.0
