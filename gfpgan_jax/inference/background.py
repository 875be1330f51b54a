"""The background upsampler of the whole-image pipeline: Real-ESRGAN (RRDBNet) run tile by tile as the official
RealESRGANer.enhance does, so that the tiles, their context and the seams fall where the official's do.

Tiles are not padded up to one shape: every conv zero-pads its own input, and the trunk's receptive field (hundreds
of pixels) spans a whole tile, so a smaller edge tile padded out would see the padding everywhere and give other
values. The network is compiled once per distinct tile shape instead: at most four sizes per axis (the first tile,
the inner ones, the last one, and the one before it when the last is shorter than tile_pad), so at most sixteen
programs per image size.
"""

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.convert.rrdbnet import convert_rrdbnet
from gfpgan_jax.inference.loading import FromOfficialWeights
from gfpgan_jax.models.rrdbnet import UNSHUFFLE_FACTORS, RRDBNet


def tile_spans(length, tile, tile_pad):
    """Along one axis, per tile: (start, end) of the part it fills and (start, end) of the input it sees, as the
    official: tiles of `tile` pixels from 0 (the last one shorter), each seeing `tile_pad` more on both sides
    where the image goes on."""
    return [((start, min(start + tile, length)), (max(start - tile_pad, 0), min(start + tile + tile_pad, length)))
            for start in range(0, length, tile)]


class BackgroundUpsampler(FromOfficialWeights):
    """Real-ESRGAN as the official RealESRGANer with `enhance(image, outscale)`; the defaults are those of
    GFPGAN's inference_gfpgan.py (tile 400, tile_pad 10, pre_pad 0).

    options, variables: from `convert_rrdbnet`. tile: tile side in input pixels, 0 for the whole image at once.
    tile_pad: context each tile sees beyond its own part. pre_pad: reflected rows and columns added at the bottom
    and right before upsampling and cut off after. dtype: jnp.float32 (the default), or jnp.bfloat16 for faster
    accelerator inference (parameters stay fp32; the official uses fp16 on GPUs). The official pipeline's file is
    RealESRGAN_x2plus.pth.
    """
    RELEASE = 'RealESRGAN_x2plus'

    def __init__(self, options, variables, *, tile=400, tile_pad=10, pre_pad=0, dtype=jnp.float32):
        self.options = dict(options)
        self.scale = self.options['scale']
        self.tile = tile
        self.tile_pad = tile_pad
        self.pre_pad = pre_pad
        self.variables = jax.device_put(variables)
        model = RRDBNet(**self.options, dtype=dtype)
        # Jitted per instance; each tile shape compiles once.
        self._network = jax.jit(lambda variables, x: model.apply(variables, x).astype(jnp.float32))

    @classmethod
    def from_state_dict(cls, state, **kwargs):
        return cls(*convert_rrdbnet(state), **kwargs)

    def enhance(self, image, outscale=None):
        """What the official `enhance(image, outscale)[0]` gives: a BGR (h, w, 3), grey (h, w) or BGRA (h, w, 4)
        image, 8-bit or (when a value exceeds 256) 16-bit, upsampled by the network's scale and then resized with
        Lanczos to `outscale` times the input where that differs. The alpha channel goes through the network too.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[2] not in (3, 4):
            raise ValueError(f'expected an (h, w), (h, w, 3) or (h, w, 4) image, got {image.shape}')
        height, width = image.shape[:2]
        max_range = 65535 if np.max(image) > 256 else 255
        image = image.astype(np.float32) / max_range
        if image.ndim == 2:
            output = cv2.cvtColor(self._upsample_rgb(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)), cv2.COLOR_BGR2GRAY)
        else:
            output = self._upsample_rgb(np.ascontiguousarray(image[:, :, 2::-1]))
        if image.ndim == 3 and image.shape[2] == 4:
            alpha = self._upsample_rgb(cv2.cvtColor(image[:, :, 3], cv2.COLOR_GRAY2RGB))
            output = np.concatenate([output, cv2.cvtColor(alpha, cv2.COLOR_BGR2GRAY)[:, :, None]], axis=2)
        output = (output * float(max_range)).round().astype(np.uint16 if max_range == 65535 else np.uint8)
        if outscale is not None and outscale != float(self.scale):
            size = (int(width * outscale), int(height * outscale))
            output = cv2.resize(output, size, interpolation=cv2.INTER_LANCZOS4)
        return output

    def _upsample_rgb(self, rgb):
        """float32 RGB (h, w, 3) in [0, 1] -> the network's BGR output, (h * scale, w * scale, 3) in [0, 1]."""
        height, width = rgb.shape[:2]
        padded = np.pad(rgb, ((0, self.pre_pad), (0, self.pre_pad), (0, 0)), mode='reflect')
        factor = UNSHUFFLE_FACTORS[self.scale]
        padded = np.pad(padded, ((0, -padded.shape[0] % factor), (0, -padded.shape[1] % factor), (0, 0)),
                        mode='reflect')
        output = self._tiled(padded) if self.tile > 0 else np.asarray(self._network(self.variables, padded[None])[0])
        return np.clip(output[:height * self.scale, :width * self.scale, ::-1], 0, 1)

    def _tiled(self, image):
        scale = self.scale
        output = np.zeros((image.shape[0] * scale, image.shape[1] * scale, image.shape[2]), np.float32)
        # Every tile is dispatched before any is read back, so the device never waits on the host between tiles.
        pending = []
        for (top, bottom), (seen_top, seen_bottom) in tile_spans(image.shape[0], self.tile, self.tile_pad):
            for (left, right), (seen_left, seen_right) in tile_spans(image.shape[1], self.tile, self.tile_pad):
                tile = self._network(self.variables, image[None, seen_top:seen_bottom, seen_left:seen_right])
                placement = np.s_[top * scale:bottom * scale, left * scale:right * scale]
                crop = np.s_[(top - seen_top) * scale:(bottom - seen_top) * scale,
                             (left - seen_left) * scale:(right - seen_left) * scale]
                pending.append((placement, crop, tile))
        for placement, crop, tile in pending:
            output[placement] = np.asarray(tile[0])[crop]
        return output
