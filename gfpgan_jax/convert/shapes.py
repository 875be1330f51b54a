"""Constructor options that both official layouts reveal through the same tensor names and shapes."""
import re

from gfpgan_jax.models.style import num_latents


def generator_options(state):
    """out_size, num_style_feat, channel_multiplier, num_mlp, different_w, narrow and sft_half of a GFPGAN state
    dict (input_is_latent, lr_mlp and resample_kernel are not in the weights)."""
    num_levels = sum(1 for k in state if re.fullmatch(r'stylegan_decoder\.to_rgbs\.\d+\.bias', k))
    out_size = 2 ** (num_levels + 2)
    c4, num_style_feat = state['stylegan_decoder.style_conv1.modulated_conv.modulation.weight'].shape
    narrow = c4 / 512
    channel_multiplier = 2
    if out_size >= 64:  # below 64 px the multiplier shapes no tensor
        c64 = state['stylegan_decoder.to_rgbs.3.modulated_conv.weight'].shape[2]
        channel_multiplier = round(c64 / (256 * narrow))
    num_latent = num_latents(out_size)
    unet_c8 = state['condition_scale.0.0.weight'].shape[0]
    return dict(
        out_size=out_size, num_style_feat=num_style_feat, channel_multiplier=channel_multiplier, narrow=narrow,
        num_mlp=sum(1 for k in state if re.fullmatch(r'stylegan_decoder\.style_mlp\.\d+\.weight', k)),
        different_w=state['final_linear.weight'].shape[0] == num_latent * num_style_feat,
        sft_half=state['condition_scale.0.2.weight'].shape[0] == unet_c8)
