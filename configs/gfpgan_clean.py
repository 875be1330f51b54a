"""GFPGAN v1.2 / v1.3 / v1.4: the clean architecture as the official tool builds it for the released weights.

Variants import this file and override fields, e.g. `configs/gfpgan_v1.py`.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.model = ml_collections.ConfigDict(dict(
        arch='clean', out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, input_is_latent=True,
        different_w=True, narrow=1.0, sft_half=True, lr_mlp=0.01, resample_kernel=(1, 3, 3, 1)))
    return config
