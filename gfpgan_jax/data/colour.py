"""The colour operations of the official degradation, per sample, in fp32: OpenCV's BGR2GRAY and torchvision's
tensor colour jitter (brightness, contrast, saturation, hue; torchvision.transforms.functional on float tensors).

Images are (b, h, w, 3) RGB in [0, 1]; factors are (b,) arrays. dm-pix's adjust_hue is torchvision's to within
1e-6 and is used; its brightness (additive), contrast (per-channel means) and saturation (in HSV) are other
operations than torchvision's, which blend with black, the mean grey level and the grey image.
"""
import dm_pix
import jax.numpy as jnp


def _per_sample(factor):
    return jnp.asarray(factor, jnp.float32)[:, None, None, None]


def opencv_grey(images):
    """cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) of float images, tiled back to three channels; OpenCV sums
    0.299 R + (0.114 B + 0.587 G) with fused multiply-adds."""
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    grey = r * 0.299 + (b * 0.114 + g * 0.587)
    return jnp.repeat(grey[..., None], 3, axis=-1)


def torchvision_grey(images):
    """torchvision's rgb_to_grayscale (the weights 0.2989, 0.587, 0.114), (b, h, w, 1)."""
    r, g, b = images[..., 0:1], images[..., 1:2], images[..., 2:3]
    return 0.2989 * r + 0.587 * g + 0.114 * b


def _blend(images, other, ratio):
    ratio = _per_sample(ratio)
    return jnp.clip(ratio * images + (1.0 - ratio) * other, 0.0, 1.0)


def adjust_brightness(images, factor):
    return _blend(images, jnp.zeros_like(images), factor)


def adjust_contrast(images, factor):
    return _blend(images, _mean_grey(images), factor)


def adjust_saturation(images, factor):
    return _blend(images, torchvision_grey(images), factor)


def adjust_hue(images, factor):
    return dm_pix.adjust_hue(images, jnp.asarray(factor, jnp.float32)[:, None, None])


def _mean_grey(images):
    return jnp.mean(torchvision_grey(images), axis=(1, 2, 3), keepdims=True)


JITTERS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
HUE = 3


def _chosen_blend(images, which, factor):
    # Brightness, contrast or saturation (which: 0, 1, 2 per sample): each blends with black, the mean grey level or
    # the grey image.
    which = which[:, None, None, None]
    other = jnp.where(which == 0, 0.0, jnp.where(which == 1, _mean_grey(images), torchvision_grey(images)))
    return _blend(images, other, factor)


def jitter_in_order(images, order, factors):
    """The four adjustments, each sample in its own order: order (b, 4) a permutation of 0..3 (indices into
    JITTERS: brightness, contrast, saturation, hue) per sample, factors (b, 4) in that same index order.

    The three blends are cheap and the hue change is not, so the hue runs once for all samples between the blends
    each sample applies before it and those it applies after it."""
    hue_position = jnp.argmax(order == HUE, axis=1)

    def blends(images, positions, active):
        for position in positions:
            which = order[:, position]
            factor = jnp.take_along_axis(factors, which[:, None], axis=1)[:, 0]
            on = (active(position) & (which != HUE))[:, None, None, None]
            images = jnp.where(on, _chosen_blend(images, which, factor), images)
        return images

    images = blends(images, range(HUE), lambda position: position < hue_position)
    images = adjust_hue(images, factors[:, HUE])
    return blends(images, range(1, 4), lambda position: position > hue_position)
