"""Per-sample Gaussian blur as the official degradation does it: basicsr's bivariate Gaussian kernels, applied the
way `cv2.filter2D` applies them (correlation, anchor at the centre, BORDER_REFLECT_101).

Each sample has its own 41 x 41 kernel, so the correlation is one batched fp32 FFT product (a direct sum would be
1681 multiply-adds a pixel); it stays within 5e-7 of OpenCV's result on images in [0, 1].
"""
import jax.numpy as jnp

from gfpgan_jax.data.arithmetic import divide


def bivariate_gaussian(size, sigma_x, sigma_y, theta):
    """(b, size, size) float32 normalised kernels exp(-q/2) / sum, q = [x y] Sigma^-1 [x y]^T on the centred grid,
    Sigma = R diag(sigma_x^2, sigma_y^2) R^T with R the rotation by theta; rows are y, columns x (basicsr's
    `bivariate_Gaussian`). An isotropic kernel is sigma_y = sigma_x (theta then does not matter)."""
    if size % 2 != 1:
        raise ValueError(f'blur kernel size must be odd, got {size}')
    sigma_x, sigma_y, theta = (jnp.asarray(v, jnp.float32)[:, None, None] for v in (sigma_x, sigma_y, theta))
    offsets = jnp.arange(size, dtype=jnp.float32) - size // 2
    x, y = offsets[None, None, :], offsets[None, :, None]
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    # q = |diag(1/sx, 1/sy) R^T [x y]^T|^2: rotating the grid first keeps fp32 within 2e-7 of basicsr's fp64 inverse
    # of Sigma, where the expanded quadratic form loses 1e-5 to cancellation for narrow kernels.
    u = (cos * x + sin * y) / sigma_x
    v = (cos * y - sin * x) / sigma_y
    kernel = jnp.exp(-0.5 * (u * u + v * v))
    return divide(kernel, jnp.sum(kernel, axis=(1, 2), keepdims=True))


def _fft_length(n):
    # The smallest 2^a 3^b 5^c >= n: the FFT is fastest on such lengths.
    best = 1 << (n - 1).bit_length()
    for three in (1, 3, 9, 27, 81):
        for five in (1, 5, 25, 125):
            m = three * five
            while m < n:
                m *= 2
            best = min(best, m)
    return best


def filter2d(images, kernels):
    """cv2.filter2D(image, -1, kernel) for each sample: images (b, h, w, c) float32, kernels (b, k, k), k odd and
    smaller than h and w: out[i, j] = sum_uv kernel[u, v] image[i + u - k//2, j + v - k//2], reflected (101) at the
    borders."""
    b, h, w, c = images.shape
    k = kernels.shape[-1]
    pad = k // 2
    if pad >= min(h, w):
        raise ValueError(f'a {k} x {k} kernel needs images larger than {pad} pixels, got {h} x {w}')
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')  # numpy's reflect is 101
    fh, fw = _fft_length(h + 2 * pad), _fft_length(w + 2 * pad)
    spectrum = jnp.fft.rfft2(padded, s=(fh, fw), axes=(1, 2))
    kernel_spectrum = jnp.fft.rfft2(kernels, s=(fh, fw), axes=(1, 2))[..., None]
    # Correlation is convolution with the conjugate spectrum; outputs 0 .. h-1 never wrap around the period.
    out = jnp.fft.irfft2(spectrum * jnp.conj(kernel_spectrum), s=(fh, fw), axes=(1, 2))
    return out[:, :h, :w].astype(images.dtype)
