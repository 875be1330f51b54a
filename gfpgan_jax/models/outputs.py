"""What a GFPGAN forward pass returns."""
from typing import NamedTuple

import jax


class Restoration(NamedTuple):
    image: jax.Array  # (b, s, s, 3), [-1, 1]
    rgbs: tuple  # U-Net RGB images at 8, 16, ... s pixels, for the pyramid loss
    latent: jax.Array  # (b, num_latent, num_style_feat), the decoder's per-layer style codes
