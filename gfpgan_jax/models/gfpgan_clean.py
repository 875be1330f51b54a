"""GFPGANv1Clean: the U-Net degradation remover whose features steer a StyleGAN2 prior (GFPGAN v1.2-v1.4)."""
import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models import unet
from gfpgan_jax.models.layers import LEAKY_SLOPE, Dtype, conv, wide_dtype
from gfpgan_jax.models.options import ModelConfig
from gfpgan_jax.models.outputs import Restoration
from gfpgan_jax.models.stylegan2_clean import StyleGAN2GeneratorClean
from gfpgan_jax.ops.resample import downsample_bilinear_2x, upsample_bilinear_2x


class ResBlock(nn.Module):
    """Residual block that halves (`down`) or doubles the resolution, with a 1x1 skip path."""
    out_channels: int
    down: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        resample = downsample_bilinear_2x if self.down else upsample_bilinear_2x
        out = nn.leaky_relu(conv(x.shape[-1], 3, 'conv1', self.dtype)(x), LEAKY_SLOPE)
        out = nn.leaky_relu(conv(self.out_channels, 3, 'conv2', self.dtype)(resample(out)), LEAKY_SLOPE)
        return out + conv(self.out_channels, 1, 'skip', self.dtype, use_bias=False)(resample(x))


class SFTBranch(nn.Module):
    """Conv-LeakyReLU-conv producing an SFT scale or shift map."""
    out_channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = nn.leaky_relu(conv(x.shape[-1], 3, 'conv1', self.dtype)(x), LEAKY_SLOPE)
        return conv(self.out_channels, 3, 'conv2', self.dtype)(out)


class GFPGANv1Clean(nn.Module):
    """GFP-GAN with the clean StyleGAN2 decoder, built as `config` describes (its `arch` is not read).

    `fix_decoder` is a training matter (an optimizer mask) and so not a field here; see
    `gfpgan_jax.models.generator.trainable_mask`. Input (b, s, s, 3) in [-1, 1]; returns a `Restoration`.
    `fidelity` (a scalar in [0, 1], may be traced; None, the default, is the official output) weakens the SFT
    modulation towards none: see `unet.weaken_conditions`.
    """
    config: ModelConfig = ModelConfig()
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, noise='random', fidelity=None):
        def activated(layer):
            return lambda x: nn.leaky_relu(layer(x), LEAKY_SLOPE)

        dtype = self.dtype
        style_code, conditions, rgbs = unet.degradation_removal(self, self.config, x, unet.UNetLayers(
            first=lambda name, c: activated(conv(c, 1, name, dtype)),
            down=lambda name, c: ResBlock(c, down=True, dtype=dtype, name=name),
            final=lambda name, c: activated(conv(c, 3, name, dtype)),
            linear=lambda name, c: nn.Dense(c, dtype=dtype, name=name),
            up=lambda name, c: ResBlock(c, down=False, dtype=dtype, name=name),
            sft_scale=lambda name, c: SFTBranch(c, dtype=dtype, name=name),
            sft_shift=lambda name, c: SFTBranch(c, dtype=dtype, name=name),
            to_rgb=lambda name, c: conv(c, 1, name, dtype)))
        c = self.config
        decoder = StyleGAN2GeneratorClean(c.out_size, c.num_style_feat, c.num_mlp, c.channel_multiplier, c.narrow,
                                          c.sft_half, dtype=dtype, name='stylegan_decoder')
        image, latent = decoder(style_code, unet.weaken_conditions(conditions, fidelity),
                                input_is_latent=c.input_is_latent, noise=noise)
        return Restoration(image.astype(wide_dtype(dtype)), rgbs, latent)
