"""IEEE fp32 division where XLA would otherwise change it, and 8-bit levels as the floats numpy makes of them.

XLA's algebraic simplifier turns a division by a broadcast value (a constant such as 255, or one number per sample)
into a multiplication by its reciprocal, which is up to 1 ulp off the division the official code does in numpy.
Dividing by a full-shape array that has passed an optimisation barrier keeps the real division.
"""
import jax
import jax.numpy as jnp
import numpy as np

_UNIT_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)


def divide(numerator, denominator):
    """numerator / denominator, correctly rounded (the denominator broadcast to the result's shape first)."""
    numerator, denominator = jnp.broadcast_arrays(numerator, denominator)
    return numerator / jax.lax.optimization_barrier(denominator)


def levels_to_unit(levels):
    """Integer levels 0..255 -> float32 level / 255, exactly numpy's `np.float32(levels) / 255.`"""
    return jnp.asarray(_UNIT_LEVELS)[levels]
