"""GFPGAN v1.2 / v1.3 / v1.4: the clean architecture as the official tool builds it for the released weights.

Variants import this file and override fields, e.g. `configs/gfpgan_v1.py`. The values are `ModelConfig`'s
defaults, so they are written in one place.
"""
import dataclasses

import ml_collections

from gfpgan_jax.models.options import ModelConfig


def get_config():
    config = ml_collections.ConfigDict()
    config.model = ml_collections.ConfigDict(dataclasses.asdict(ModelConfig()))
    return config
