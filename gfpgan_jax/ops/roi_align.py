"""RoI Align as torchvision's compiled `roi_align(..., spatial_scale=1, sampling_ratio=-1, aligned=False)`, jit-safe.

Each output bin averages `ceil(box_h / out_h) x ceil(box_w / out_w)` bilinear samples spread evenly over the bin;
torchvision picks that count per box at run time. Here the samples are added one at a time in a loop that runs to
the largest count among the boxes (a traced trip count: shapes never depend on the boxes), each box masking out the
samples it does not need; any box size is exact.

Border rules are those of torchvision's CPU and CUDA kernels (the ones GFPGAN trains with): a sample more than one
pixel outside the image (y < -1, y > height, likewise x) counts as 0, one between -1 and 0 is clamped to the first
row or column, and one past the last row or column reads that row or column. (torchvision's pure-PyTorch
`_roi_align`, its fallback where the compiled ops are missing, clamps every sample instead and so differs from the
kernels for boxes reaching more than a pixel past the border.)

Bilinear sampling is separable and so are the masks, so a box's crop is `rows @ image @ columns.T` with sparse
(out, size) weight matrices: two matmuls, whose gradient is their transpose (no scatter). The weights depend on
the boxes only, which are data, so the sample loop is never differentiated.
"""
import jax
import jax.numpy as jnp
import numpy as np

# Interpolation weights must not be rounded to bf16 on accelerators whose default f32 matmul does so.
_EXACT = jax.lax.Precision.HIGHEST


def _samples_per_bin(extent, bins):
    """The kernels' ceil(extent / bins), with the quotient rounded as IEEE division rounds it.

    XLA may divide through a reciprocal (CPU does), one rounding off: 21 / 7 gives 3.0000002 and 4 samples, where
    the kernels take 3. So the count is decided exactly: `nearest` is the integer nearest the quotient, `excess`
    = extent - nearest * bins is exact (Sterbenz), and the IEEE quotient exceeds `nearest` iff the true one does
    by more than half an ulp of `nearest` (a tie cannot occur for integer bins).
    """
    nearest = jnp.maximum(jnp.round(extent / bins), 1)
    excess = extent - nearest * bins
    _, exponent = jnp.frexp(nearest)
    half_ulp = jnp.ldexp(jnp.asarray(jnp.finfo(extent.dtype).eps / 2, extent.dtype), exponent - 1)
    return jnp.where(excess > bins * half_ulp, nearest + 1, nearest)


def _sampling_matrix(start, extent, bins, size, dtype):
    """(..., bins, size) weights of one axis: row j averages the box's samples in bin j along this axis.

    `start`, `extent`: (...) box start and length (already at least 1) along the axis; `size`: image length.
    """
    bin_size = extent / bins
    samples = _samples_per_bin(extent, bins)  # per bin and axis, chosen per box as torchvision does
    bin_start = start[..., None] + jnp.arange(bins, dtype=dtype) * bin_size[..., None]  # (..., bins)
    pixels = jnp.arange(size, dtype=dtype)

    def add_sample(i, weights):
        # The kernels' order of operations: at 1000 px one float32 rounding moves a sample by 6e-5 px.
        coord = bin_start + (i + 0.5) * bin_size[..., None] / samples[..., None]
        kept = (i < samples)[..., None] & (coord >= -1) & (coord <= size)
        coord = jnp.maximum(coord, 0)
        low = jnp.floor(coord)
        past_last = low >= size - 1
        low = jnp.where(past_last, size - 1, low)
        high = jnp.where(past_last, size - 1, low + 1)
        frac = jnp.where(past_last, 0, coord - low)
        share = jnp.where(kept, 1 / samples[..., None], 0)  # 1 / samples: this axis's half of 1 / count
        return weights + (share * (1 - frac))[..., None] * (pixels == low[..., None]) \
            + (share * frac)[..., None] * (pixels == high[..., None])

    most = jnp.max(samples, initial=0).astype(jnp.int32)
    return jax.lax.fori_loop(0, most, add_sample, jnp.zeros(bin_start.shape + (size,), dtype))


def roi_align(images, boxes, output_size):
    """Crop `boxes` out of `images` with RoI Align (torchvision semantics, see the module docstring).

    Args:
        images: (b, h, w, c) NHWC.
        boxes: (b, n, 4) per image `n` boxes as (x1, y1, x2, y2) in pixels, the coordinates torchvision takes
            (spatial_scale 1, aligned=False: pixel i's centre is at i; boxes narrower than 1 pixel count as 1).
            Boxes are data: no gradient flows into them.
        output_size: int or (out_h, out_w).

    Returns:
        (b, n, out_h, out_w, c) crops in the images' dtype, computed in at least float32.
    """
    out_h, out_w = (output_size, output_size) if np.isscalar(output_size) else tuple(output_size)
    if images.ndim != 4:
        raise ValueError(f'roi_align: images must be (b, h, w, c), got shape {images.shape}')
    if boxes.ndim != 3 or boxes.shape[0] != images.shape[0] or boxes.shape[2] != 4:
        raise ValueError(f'roi_align: boxes must be (b, n, 4) for {images.shape[0]} images, got {boxes.shape}')
    if out_h < 1 or out_w < 1:
        raise ValueError(f'roi_align: output_size must be positive, got {output_size}')
    _, height, width, _ = images.shape

    dtype = jnp.promote_types(jnp.promote_types(images.dtype, boxes.dtype), jnp.float32)
    x1, y1, x2, y2 = jnp.moveaxis(jax.lax.stop_gradient(boxes).astype(dtype), -1, 0)
    rows = _sampling_matrix(y1, jnp.maximum(y2 - y1, 1), out_h, height, dtype)  # (b, n, out_h, h)
    cols = _sampling_matrix(x1, jnp.maximum(x2 - x1, 1), out_w, width, dtype)  # (b, n, out_w, w)
    wide = images.astype(dtype)
    # Rows, then columns: out_h * h * w * c, then out_h * w * out_w * c multiply-adds per box.
    crops = jnp.einsum('bnph,bhwc->bnpwc', rows, wide, precision=_EXACT)
    crops = jnp.einsum('bnpwc,bnqw->bnpqc', crops, cols, precision=_EXACT)
    return crops.astype(images.dtype)


def crop_facial_components(images, left_eyes, right_eyes, mouths, eye_size=80, mouth_size=120):
    """The eye and mouth crops of GFPGAN's training (`GFPGANModel.get_roi_regions`), for generated or real faces.

    As the official: face_ratio = int(side / 512) scales both the crop sizes and the crop values (a 1024 face gives
    160 px crops with doubled pixel values), and faces smaller than 512 are refused (face_ratio 0 there).

    Args:
        images: (b, s, s, 3) faces.
        left_eyes, right_eyes, mouths: (b, 4) boxes (x1, y1, x2, y2) in pixels of the face, as the dataset's
            `loc_left_eye`, `loc_right_eye`, `loc_mouth`.

    Returns:
        (left_eyes, right_eyes, mouths): (b, e, e, 3), (b, e, e, 3), (b, m, m, 3) with e = eye_size * face_ratio,
        m = mouth_size * face_ratio.
    """
    _, height, width, _ = images.shape
    face_ratio = width // 512
    if height != width or face_ratio < 1:
        raise ValueError(f'crop_facial_components: faces must be square and at least 512 px, got {height}x{width}')
    eyes = roi_align(images, jnp.stack([left_eyes, right_eyes], axis=1), eye_size * face_ratio) * face_ratio
    mouth = roi_align(images, mouths[:, None], mouth_size * face_ratio)[:, 0] * face_ratio
    return eyes[:, 0], eyes[:, 1], mouth
