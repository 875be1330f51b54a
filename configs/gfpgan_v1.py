"""GFPGAN v1, the paper's model: the original architecture (equalised learning rate, upfirdn2d resampling)."""
from configs import gfpgan_clean


def get_config():
    config = gfpgan_clean.get_config()
    config.model.arch = 'original'
    config.model.channel_multiplier = 1
    return config
