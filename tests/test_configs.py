"""configs/ holds the architecture of each release; the converter must read the same off the weights."""
import importlib

import pytest

import official
from gfpgan_jax.convert import generator as convert
from gfpgan_jax.models.options import ModelConfig
from parity_utils import state_dict_numpy

# Class and channel multiplier of each architecture in the official inference script (-v 1: original, 1;
# -v 1.2, 1.3, 1.4: clean, 2).
OFFICIAL_BUILDS = {'clean': (official.gfpganv1_clean_arch.GFPGANv1Clean, 2),
                   'original': (official.gfpganv1_arch.GFPGANv1, 1)}


@pytest.mark.parametrize('config_name', ['gfpgan_clean', 'gfpgan_v1'])
def test_release_configs_describe_the_released_layouts(config_name):
    expected = ModelConfig.from_config(importlib.import_module(f'configs.{config_name}').get_config().model)
    cls, channel_multiplier = OFFICIAL_BUILDS[expected.arch]
    module = cls(out_size=512, channel_multiplier=channel_multiplier, fix_decoder=False, input_is_latent=True,
                 different_w=True, sft_half=True)
    assert convert.detect_config(state_dict_numpy(module)) == expected
