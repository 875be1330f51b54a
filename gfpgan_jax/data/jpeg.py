"""JPEG compression and decompression of a batch, as OpenCV's bundled libjpeg-turbo does in cv2.imencode('.jpg')
followed by cv2.imdecode, in integer arithmetic on the device.

What the codec does to the pixels (entropy coding is lossless and left out), in order:
- RGB -> YCbCr in 16-bit fixed point (jccolor.c), chroma 4:2:0: each 2 x 2 block averaged with the alternating
  rounding bias 1, 2, 1, 2 along a row (jcsample.c);
- edges padded to whole blocks by repetition (jcprepct.c, jcsample.c): luma by its last row and column; before
  chroma is averaged, the image by its last column (to 16-pixel multiples) and last row (to an even height), and
  after, the chroma planes by their last row;
- the accurate integer forward DCT (jfdctint.c, 'islow', libjpeg's default), quantisation by the quality-scaled
  tables of the JPEG standard's Annex K (jcparam.c), rounding half away from zero (jcdctmgr.c; libjpeg-turbo's
  division by reciprocal multiplication gives the same quotient for every coefficient an 8-bit image can have);
- dequantisation and the accurate integer inverse DCT (jidctint.c), clamped to 0..255;
- "fancy" (triangular) h2v2 upsampling of chroma (jdsample.c) with the edge rows and columns repeated;
- YCbCr -> RGB in fixed point (jdcolor.c), clamped.
Qualities are integers 1..100, as the codec takes them (OpenCV >= 4.5.5 refuses a float quality; basicsr passes one
and, on the OpenCV versions it was written for, had it truncated). Agreement with cv2.imencode / imdecode (OpenCV 5,
libjpeg-turbo 3.1) is bit-exact: every pixel, every quality tested, odd sizes included.
"""
import jax
import jax.numpy as jnp
import numpy as np

# Annex K of the JPEG standard (ITU-T T.81): luminance and chrominance quantisation tables, rows of the 8 x 8 block.
LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
CHROMA_TABLE = np.full((8, 8), 99)
CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

_SCALE_BITS = 16  # fixed point of the colour conversions
_HALF = 1 << (_SCALE_BITS - 1)
_CONST_BITS, _PASS1_BITS = 13, 2  # fixed point of the integer DCTs


def _fix(x, bits=_SCALE_BITS):
    return int(x * (1 << bits) + 0.5)


def quantisation_tables(quality):
    """(2, 8, 8) luma and chroma tables of libjpeg's jpeg_set_quality(quality, force_baseline=TRUE)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = (np.stack([LUMA_TABLE, CHROMA_TABLE]) * scale + 50) // 100
    return np.clip(tables, 1, 255)


# Per quality 0..100 (0 taken as 1, as libjpeg does).
_TABLES = np.stack([quantisation_tables(q) for q in range(101)]).astype(np.int32)


def _odd_part(r0, r1, r2, r3):
    # The odd half of the 8-point DCT's rotations, shared by the forward and inverse transforms (jfdctint.c,
    # jidctint.c): inputs are the four odd terms in the order the forward DCT names tmp4..tmp7.
    z5 = (r0 + r1 + r2 + r3) * 9633
    z1 = (r0 + r3) * -7373
    z2 = (r1 + r2) * -20995
    z3 = (r0 + r2) * -16069 + z5
    z4 = (r1 + r3) * -3196 + z5
    return r0 * 2446 + z1 + z3, r1 * 16819 + z2 + z4, r2 * 25172 + z2 + z3, r3 * 12299 + z1 + z4


def _forward_rotations(d):
    # jfdctint.c's butterflies for one row, before each output's final descaling: outputs 0 and 4 are plain sums,
    # the others carry CONST_BITS of fixed point.
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    z1 = (tmp12 + tmp13) * 4433
    out7, out5, out3, out1 = _odd_part(tmp4, tmp5, tmp6, tmp7)
    return [tmp10 + tmp11, out1, z1 + tmp13 * 6270, out3, tmp10 - tmp11, out5, z1 + tmp12 * -15137, out7]


def _inverse_rotations(c):
    # jidctint.c's butterflies for one column or row, before the final descaling (all outputs alike).
    z1 = (c[2] + c[6]) * 4433
    tmp2 = z1 + c[6] * -15137
    tmp3 = z1 + c[2] * 6270
    tmp0 = (c[0] + c[4]) * (1 << _CONST_BITS)
    tmp1 = (c[0] - c[4]) * (1 << _CONST_BITS)
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = _odd_part(c[7], c[5], c[3], c[1])
    return [tmp10 + o3, tmp11 + o2, tmp12 + o1, tmp13 + o0, tmp13 - o0, tmp12 - o1, tmp11 - o2, tmp10 - o3]


def _as_matrix(rotations):
    # Before descaling, each pass is integer-linear in its 8 inputs: the butterflies applied to the unit vectors give
    # its 8 x 8 matrix (output, input), and a pass becomes one small exact integer matmul.
    return np.stack(rotations(list(np.eye(8, dtype=np.int64)))).astype(np.int32)


_EVEN_DC = np.array([1, 0, 0, 0, 1, 0, 0, 0], bool)  # forward outputs 0 and 4: plain sums, no fixed point
# The forward DCT's first pass (rows) shifts outputs 0 and 4 left by PASS1_BITS instead of descaling them.
_FORWARD_ROWS = _as_matrix(_forward_rotations) * np.where(_EVEN_DC, 1 << _PASS1_BITS, 1)[:, None]
_FORWARD_COLUMNS = _as_matrix(_forward_rotations)
_INVERSE = _as_matrix(_inverse_rotations)


def _pass(x, matrix, axis, shifts):
    """One 1-d pass along `axis` (-1 rows, -2 columns) of (..., 8, 8) blocks: the matmul, then DESCALE (a right
    shift rounding half up) by `shifts` bits, per output."""
    spec = '...ij,kj->...ik' if axis == -1 else '...ji,kj->...ki'
    y = jnp.einsum(spec, x, jnp.asarray(matrix), preferred_element_type=jnp.int32)
    shifts = np.broadcast_to(shifts, (8,)).reshape((8,) if axis == -1 else (8, 1))
    rounding = np.where(shifts > 0, 1 << np.maximum(shifts - 1, 0), 0)
    return (y + rounding) >> shifts


def _forward_dct(blocks):
    # Pass 1 (rows) keeps PASS1_BITS of extra precision, pass 2 (columns) removes it.
    rows = _pass(blocks, _FORWARD_ROWS, -1, np.where(_EVEN_DC, 0, _CONST_BITS - _PASS1_BITS))
    return _pass(rows, _FORWARD_COLUMNS, -2, np.where(_EVEN_DC, _PASS1_BITS, _CONST_BITS + _PASS1_BITS))


def _inverse_dct(coefficients):
    # Columns first, then rows; the second pass also removes the first's PASS1_BITS and the transform's factor 8.
    columns = _pass(coefficients, _INVERSE, -2, _CONST_BITS - _PASS1_BITS)
    return _pass(columns, _INVERSE, -1, _CONST_BITS + _PASS1_BITS + 3)


def _blocks(plane):
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)


def _unblocks(blocks):
    b, nh, nw = blocks.shape[:3]
    return blocks.transpose(0, 1, 3, 2, 4).reshape(b, nh * 8, nw * 8)


def _code_plane(plane, table):
    """Samples 0..255 (b, h, w), h and w multiples of 8, through the forward DCT, quantisation (tables (b, 8, 8)),
    dequantisation and the inverse DCT: the decoder's samples."""
    table = table[:, None, None]
    coefficients = _forward_dct(_blocks(plane) - 128)
    # The forward DCT's outputs are 8 times the true coefficients, so the encoder divides by 8 x the table.
    divisor = 8 * table
    magnitude = (jnp.abs(coefficients) + divisor // 2) // divisor
    quantised = jnp.where(coefficients < 0, -magnitude, magnitude)
    return _unblocks(jnp.clip(_inverse_dct(quantised * table) + 128, 0, 255))


def _rgb_to_ycbcr(rgb):
    r, g, b = (rgb[..., i] for i in range(3))
    y = (_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _HALF) >> _SCALE_BITS
    offset = (128 << _SCALE_BITS) + _HALF - 1
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset) >> _SCALE_BITS
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset) >> _SCALE_BITS
    return y, cb, cr


def _ycbcr_to_rgb(y, cb, cr):
    cb, cr = cb - 128, cr - 128
    r = y + ((_fix(1.402) * cr + _HALF) >> _SCALE_BITS)
    g = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + _HALF) >> _SCALE_BITS)
    b = y + ((_fix(1.772) * cb + _HALF) >> _SCALE_BITS)
    return jnp.clip(jnp.stack([r, g, b], axis=-1), 0, 255)


def _downsample_chroma(plane):
    # 2 x 2 sums with a rounding bias of 1 at even output columns and 2 at odd ones.
    b, h, w = plane.shape
    sums = plane.reshape(b, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
    bias = 1 + (jnp.arange(w // 2) % 2)
    return (sums + bias) >> 2


def _upsample_chroma(plane):
    # Triangular filter: each output sample is 9/16, 3/16, 3/16, 1/16 of its four nearest inputs, vertically first
    # (3 x nearer row + further row), then horizontally with a rounding bias of 8 (even columns) or 7 (odd ones).
    padded = jnp.pad(plane, ((0, 0), (1, 1), (1, 1)), mode='edge')
    nearer = 3 * padded[:, 1:-1]
    above, below = nearer + padded[:, :-2], nearer + padded[:, 2:]
    b, h, w = plane.shape
    sums = jnp.stack([above, below], axis=2).reshape(b, 2 * h, w + 2)
    centre = 3 * sums[:, :, 1:-1]
    even = (centre + sums[:, :, :-2] + 8) >> 4
    odd = (centre + sums[:, :, 2:] + 7) >> 4
    return jnp.stack([even, odd], axis=3).reshape(b, 2 * h, 2 * w)


def _clamp_gather(planes, heights, widths):
    # Each sample's plane (..., h, w) with rows >= heights and columns >= widths replaced by the last valid ones.
    h, w = planes.shape[1:3]
    rows = jnp.minimum(jnp.arange(h)[None], heights[:, None] - 1)
    cols = jnp.minimum(jnp.arange(w)[None], widths[:, None] - 1)
    return jax.vmap(lambda p, r, c: p[r][:, c])(planes, rows, cols)


def jpeg_round_trip(images, quality, heights, widths):
    """Each sample's top-left heights x widths pixels, JPEG-compressed at its quality and decompressed.

    images: (b, H, W, 3) uint8 or int RGB levels 0..255; quality: int (b,) in 1..100; heights, widths: int (b,) the
    images' sizes (>= 1, <= H, W). Returns int32 (b, H, W, 3) levels, valid in each sample's top-left corner.
    """
    b, h, w, _ = images.shape
    heights, widths = jnp.asarray(heights, jnp.int32), jnp.asarray(widths, jnp.int32)
    mcu_h, mcu_w = -(-h // 16) * 16, -(-w // 16) * 16
    rgb = jnp.pad(images.astype(jnp.int32), ((0, 0), (0, mcu_h - h), (0, mcu_w - w), (0, 0)))
    rgb = _clamp_gather(rgb, heights, widths)
    y, cb, cr = _rgb_to_ycbcr(rgb)
    # Full-size rows were repeated only to an even count before averaging; the chroma rows past the image's half
    # height repeat the last chroma row.
    chroma_h, chroma_w = (heights + 1) // 2, (widths + 1) // 2
    cb, cr = (_clamp_gather(_downsample_chroma(p), chroma_h, jnp.full_like(chroma_w, mcu_w // 2)) for p in (cb, cr))

    tables = jnp.asarray(_TABLES)[jnp.clip(jnp.asarray(quality, jnp.int32), 1, 100)]
    y = _code_plane(y, tables[:, 0])
    cb, cr = (_upsample_chroma(_clamp_gather(_code_plane(p, tables[:, 1]), chroma_h, chroma_w)) for p in (cb, cr))
    return _ycbcr_to_rgb(y, cb, cr)[:, :h, :w]
