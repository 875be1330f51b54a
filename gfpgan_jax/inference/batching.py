"""Batch shapes for compiled restoration: few distinct shapes, so that few programs are compiled."""
import numpy as np


def batch_shapes(count, batch_size):
    """Batch sizes that cover `count` faces: full batches, then the remainder padded to a power of two, so that
    any number of faces compiles at most log2(batch_size) + 1 programs."""
    full, rest = divmod(count, batch_size)
    sizes = [batch_size] * full
    if rest:
        sizes.append(min(batch_size, 1 << (rest - 1).bit_length()))
    return sizes


def pad_batch(faces, size):
    """`faces` (n, ...) with zero rows appended up to `size`; the caller drops the results of those rows."""
    padding = np.zeros((size - len(faces),) + faces.shape[1:], faces.dtype)
    return np.concatenate([faces, padding])
