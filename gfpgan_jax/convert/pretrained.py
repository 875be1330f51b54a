"""The official weights GFPGAN training starts from, read without torch: each network's Flax module and variables
from an official .pth, or from the official release (`path=None`; downloaded into the cache on first use).
"""
import os

from gfpgan_jax.convert.arcface import convert_arcface, detect_arcface
from gfpgan_jax.convert.discriminators import (
    convert_component_discriminator,
    convert_stylegan2_discriminator,
    detect_stylegan2_discriminator,
)
from gfpgan_jax.convert.generator import load_decoder
from gfpgan_jax.convert.vgg import convert_vgg
from gfpgan_jax.files.pth import load_pth, select_state_dict
from gfpgan_jax.files.releases import helper_weights_path
from gfpgan_jax.models.discriminators import FacialComponentDiscriminator
from gfpgan_jax.models.vgg import VGGFeatureExtractor

# Names of the official files (keys of releases.HELPER_WEIGHTS).
DECODER_RELEASE = 'StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k'
DISCRIMINATOR_RELEASE = 'GFPGANv1_net_d'
COMPONENT_RELEASES = {part: f'GFPGANv1_net_d_{part}' for part in ('left_eye', 'right_eye', 'mouth')}
ARCFACE_RELEASE = 'arcface_resnet18'
VGG_RELEASES = {'vgg19': 'vgg19-dcbb9e9d'}
DATA_PARALLEL_PREFIX = 'module.'


def read_state_dict(path):
    """The state dict basicsr's `load_network` takes from the .pth at `path`: `params_ema`, else `params`, else
    the file's own dict, with the `module.` prefix of a DataParallel-wrapped network removed."""
    path = os.fspath(path)
    state = select_state_dict(load_pth(path), path)
    return {key.removeprefix(DATA_PARALLEL_PREFIX): array for key, array in state.items()}


def _state(path, release):
    return read_state_dict(helper_weights_path(release) if path is None else path)


def load_stylegan2_discriminator(path=None, **fields):
    """(StyleGAN2Discriminator, variables) from an official checkpoint (GFPGANv1_net_d.pth by default); its
    out_size, channel_multiplier and narrow are read from the tensors, `fields` set the rest."""
    state = _state(path, DISCRIMINATOR_RELEASE)
    model = detect_stylegan2_discriminator(state, **fields)
    return model, convert_stylegan2_discriminator(state, model)


def load_component_discriminator(part, path=None, **fields):
    """(FacialComponentDiscriminator, variables) for `part` ('left_eye', 'right_eye' or 'mouth'), from `path` or
    that part's released GFPGANv1_net_d_{part}.pth."""
    if part not in COMPONENT_RELEASES:
        raise ValueError(f'part must be one of {", ".join(COMPONENT_RELEASES)}, got {part!r}')
    model = FacialComponentDiscriminator(**fields)
    return model, convert_component_discriminator(_state(path, COMPONENT_RELEASES[part]), model)


def load_arcface(path=None, **fields):
    """(ResNetArcFace, variables) from an official checkpoint (arcface_resnet18.pth by default)."""
    state = _state(path, ARCFACE_RELEASE)
    model = detect_arcface(state, **fields)
    return model, convert_arcface(state, model)


def load_vgg(layer_name_list, path=None, **fields):
    """(VGGFeatureExtractor, variables) giving the features named in `layer_name_list`, from torchvision's VGG
    state dict at `path` (by default the one torchvision releases for `fields`' vgg_type, vgg19)."""
    model = VGGFeatureExtractor(tuple(layer_name_list), **fields)
    if path is None and model.vgg_type not in VGG_RELEASES:
        raise ValueError(f'no release is known for {model.vgg_type}; pass the path of its torchvision weights')
    return model, convert_vgg(_state(path, VGG_RELEASES.get(model.vgg_type)), model)


def load_pretrained_decoder(config, variables, path=None):
    """`variables` of the GFPGAN generator for `config` with the decoder of the official StyleGAN2 checkpoint
    (StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth by default), as `GFPGANv1(decoder_load_path=...)` does."""
    return load_decoder(config, variables, _state(path, DECODER_RELEASE))
