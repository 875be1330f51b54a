"""The fidelity control at restore time: what its values mean, and checking one.

Fidelity weakens the SFT modulation by which the U-Net's features steer the StyleGAN2 decoder (see
`gfpgan_jax.models.unet.weaken_conditions`): 1, the default, is the official output; towards 0 the decoder is
steered less by the degraded photo's spatial features and more by the face prior alone, driven by the style code;
at 0 by the style code alone. Lower values trade faithfulness to the photo for a cleaner, more generic face.
"""
import numbers

OFFICIAL = 1.0
HELP = ('how closely the restored faces follow the photo, in [0, 1]: 1 (default) is the official output; lower '
        'values lean on the face prior (smoother, more generic faces), 0 on it alone')


def check_fidelity(value):
    """None for the official output (None or 1: the official program runs, bit for bit), else `value` as a float in
    [0, 1]; a ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f'fidelity must be a number from 0 to 1, got {value!r}')
    return None if value == OFFICIAL else float(value)
