"""Training GFPGAN v1 without the facial component discriminators and the identity loss: the official
options/train_gfpgan_v1_simple.yml (the same values otherwise). No landmark file and no ArcFace are needed."""
from configs import train_gfpgan_v1


def get_config():
    config = train_gfpgan_v1.get_config()
    config.objective.component_gan_weight = 0.0  # no network_d_left_eye, _right_eye, _mouth
    config.objective.comp_style_weight = 0.0
    config.objective.identity_weight = 0.0  # no network_identity
    config.data.components = ''  # crop_components off
    config.weights.arcface = ''
    return config
