"""The weights and switches of GFPGAN's training objective: one value per option of the official recipe."""
import dataclasses

from gfpgan_jax.training import losses

NOISE_MODES = ('random', 'fixed')


@dataclasses.dataclass(frozen=True)
class Objective:
    """Loss weights and switches; defaults are options/train_gfpgan_v1.yml's. A weight of 0 removes its term and
    the networks only it needs (the component discriminators, VGG, ArcFace), as the official's absent options do.
    """
    pixel_weight: float = 0.1  # pixel_opt
    pyramid_loss_weight: float = 1.0
    remove_pyramid_loss: int = 50000
    perceptual_layers: tuple = tuple(losses.VGG_LAYER_WEIGHTS.items())  # (VGG19 layer, weight) pairs
    perceptual_weight: float = 1.0
    style_weight: float = 50.0
    perceptual_criterion: str = 'l1'
    gan_weight: float = 0.1  # gan_opt, wgan_softplus
    r1_reg_weight: float = 10.0
    net_d_reg_every: int = 16
    component_gan_weight: float = 1.0  # gan_component_opt, vanilla
    comp_style_weight: float = 200.0
    identity_weight: float = 10.0
    # The official scores generated crops with the main (wgan_softplus) criterion in its component discriminators'
    # update and real ones with the vanilla one (the same numbers for labels 1 and 0); True uses vanilla for both.
    consistent_component_loss: bool = False
    ema_decay: float = losses.EMA_DECAY
    # 'random': fresh decoder noise every step, as the official trains; 'fixed': the stored buffers (tests).
    noise: str = 'random'

    def __post_init__(self):
        if self.noise not in NOISE_MODES:
            raise ValueError(f'noise must be one of {NOISE_MODES}, got {self.noise!r}')
        if self.net_d_reg_every < 1:
            raise ValueError(f'net_d_reg_every must be at least 1, got {self.net_d_reg_every}')

    @property
    def uses_components(self):
        return self.component_gan_weight > 0 or self.comp_style_weight > 0

    @classmethod
    def from_config(cls, config):
        """From the `objective` section of a training config (an ml_collections ConfigDict or a dict)."""
        fields = dict(config)
        if 'perceptual_layers' in fields:
            layers = dict(fields['perceptual_layers'])
            fields['perceptual_layers'] = tuple((name, float(weight)) for name, weight in layers.items())
        return cls(**fields)
