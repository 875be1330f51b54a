"""`cv2.resize(..., interpolation=cv2.INTER_LINEAR)` of float32 images to per-sample sizes, on fixed-size canvases.

Each sample has its own output size, which must not become an array shape under jit. A bilinear resize is a
matrix with two taps per output pixel along each axis, so it is written as those taps: for output position i < n_out,
source indices (i0, i1) and the weight w1 of i1; positions at or past n_out repeat a source pixel (the canvas there
is unused). Applying the taps is a gather (no matmul whose precision an accelerator might lower), horizontal pass
first, as OpenCV does.

OpenCV's arithmetic (OpenCV 5, as measured against it): half-pixel centres, source x = (i + 0.5) * n_in / n_out - 0.5,
clamped to the edge pixels; its fractional part w1 rounded to fp32 once from the exact value (rebuilt here from
integers, so the same fp32 number); each output a + w1 (b - a), which OpenCV evaluates with a fused multiply-add
(the same here where XLA fuses it, else 1 ulp off). An exact halving (where OpenCV switches INTER_LINEAR to
INTER_AREA) gives the same 2 x 2 mean up to fp32 rounding.
"""
import jax
import jax.numpy as jnp

from gfpgan_jax.data.arithmetic import divide


def floor_quotient(numerator, denominator):
    """floor(numerator / denominator) computed exactly, as Python's `int(n // d)` is on the fp64 value of an fp32
    `denominator` > 0, for integer numerators below 2^11 (image sides) and quotients below 2^11.

    A plain fp32 division can round a quotient just under an integer up to it; the candidate is checked with an
    error-free product: the denominator is cut into a 12-bit head and its exact remainder, so k * head and k * tail are
    exact in fp32, (k * head - n) is exact (a small multiple of the head's last bit), and one last rounded addition
    cannot flip the sign of k * d - n.
    """
    n = jnp.asarray(numerator, jnp.float32)
    d = jnp.asarray(denominator, jnp.float32)
    head = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(d, jnp.int32) & ~0xFFF, jnp.float32)
    tail = d - head

    def exceeds(k):  # k * d > n, exactly
        return (k * head - n) + k * tail > 0

    k = jnp.floor(n / d)
    k = jnp.where(exceeds(k), k - 1, k)
    k = jnp.where(exceeds(k + 1), k, k + 1)
    return k.astype(jnp.int32)


def linear_taps(n_in, n_out, length):
    """INTER_LINEAR taps from per-sample sizes n_in to n_out (int arrays (b,)) for output positions 0..length-1:
    source indices (i0, i1) int32 and the weight w1 float32 of i1, each (b, length)."""
    n_in = jnp.asarray(n_in, jnp.int32)[:, None]
    n_out = jnp.asarray(n_out, jnp.int32)[:, None]
    i = jnp.arange(length, dtype=jnp.int32)[None, :]
    # Source coordinate (2i + 1) n_in / (2 n_out) - 1/2 as a fraction with denominator 2 n_out (exact in int32).
    numerator = (2 * i + 1) * n_in - n_out
    denominator = 2 * n_out
    first = jnp.floor_divide(numerator, denominator)
    frac = divide((numerator - first * denominator).astype(jnp.float32), denominator.astype(jnp.float32))
    # Past either edge OpenCV takes the edge pixel alone.
    outside = (first < 0) | (first >= n_in - 1)
    frac = jnp.where(outside, 0.0, frac)
    first = jnp.clip(first, 0, n_in - 1)
    second = jnp.minimum(first + 1, n_in - 1)
    return first, second, frac


def _resize_axis(images, taps, axis):
    def one(image, i0, i1, w1):
        shape = [1] * image.ndim
        shape[axis - 1] = -1
        a = jnp.take(image, i0, axis=axis - 1)
        b = jnp.take(image, i1, axis=axis - 1)
        return a + w1.reshape(shape) * (b - a)

    return jax.vmap(one)(images, *taps)


def resize_linear(images, size_in, size_out, canvas):
    """cv2.resize(image[:h_in, :w_in], (w_out, h_out), INTER_LINEAR) for each sample, written into the top-left of a
    (b, canvas_h, canvas_w, c) canvas (the rest of which is unused). images (b, H, W, c) float32 holds each sample
    in its top-left corner; size_in, size_out: pairs (heights, widths) of int arrays (b,); canvas: (canvas_h,
    canvas_w)."""
    (h_in, w_in), (h_out, w_out) = size_in, size_out
    images = _resize_axis(images, linear_taps(w_in, w_out, canvas[1]), axis=2)
    return _resize_axis(images, linear_taps(h_in, h_out, canvas[0]), axis=1)
