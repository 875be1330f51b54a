"""The Python API: load a GFPGAN once, restore batches of aligned faces with one compiled call per batch shape."""
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gfpgan_jax.convert.generator import convert_state_dict, detect_config
from gfpgan_jax.files.releases import RELEASES, pretrained_path
from gfpgan_jax.files.weights import load_weights
from gfpgan_jax.inference.fidelity import check_fidelity
from gfpgan_jax.models.generator import build_model
from gfpgan_jax.models.style import NOISE_MODES


def to_model_input(faces_uint8):
    """uint8 RGB (b, h, w, 3) -> float [-1, 1], the official normalisation ((x / 255) - 0.5) / 0.5."""
    return (faces_uint8.astype(jnp.float32) / 255.0 - 0.5) / 0.5


def to_uint8(images):
    """[-1, 1] float -> uint8, clamped and rounded half to even as the official tensor2img does."""
    unit = (jnp.clip(images.astype(jnp.float32), -1.0, 1.0) + 1.0) / 2.0
    return jnp.round(unit * 255.0).astype(jnp.uint8)


class FaceRestorer:
    """A GFPGAN generator with its weights, ready to restore 512x512 aligned faces.

    >>> restorer = FaceRestorer.from_pretrained('1.4')
    >>> restored = restorer.restore(faces)  # uint8 RGB (n, 512, 512, 3) in, same out

    noise: 'random' (fresh noise for every face, as the official default, but drawn from `seed` and the face's
    index, so a face's noise does not depend on the batch it came in), 'fixed' (the checkpoint's stored noise,
    the same for every face) or 'none'.
    dtype: jnp.float32, or jnp.bfloat16 for faster GPU/TPU inference (parameters stay fp32).
    """

    def __init__(self, config, variables, *, dtype=jnp.float32, noise='random', seed=0):
        if noise not in NOISE_MODES:
            raise ValueError(f'noise must be one of {NOISE_MODES}, got {noise!r}')
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f'dtype must be a floating-point type (jnp.float32, jnp.bfloat16), got {dtype!r}')
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not -2 ** 63 <= seed < 2 ** 63:
            raise ValueError(f'seed must be a whole number that fits in 64 bits, got {seed!r}')
        self.config = config
        self.variables = jax.device_put(variables)
        self.model = build_model(config, dtype)
        self.noise = noise
        # Separate streams for `apply` calls and for faces, so that neither reuses the other's noise.
        self._apply_key, self._face_key = jax.random.split(jax.random.key(seed))
        self._calls = 0
        self._faces = 0
        # Jitted per instance: a jit on the method with `self` static would keep every restorer alive.
        self._restore_uint8 = jax.jit(self._restore_faces)
        self._forward = jax.jit(self._forward_pass)

    @classmethod
    def from_state_dict(cls, state, input_is_latent=True, **kwargs):
        """From an official state dict of numpy arrays; the architecture is read off the tensors."""
        return cls(*convert_state_dict(state, detect_config(state, input_is_latent=input_is_latent)), **kwargs)

    @classmethod
    def from_checkpoint(cls, path, **kwargs):
        """From an official .pth (converted on the fly, torch not needed) or a converted .safetensors file."""
        overrides = {k: kwargs.pop(k) for k in ('input_is_latent',) if k in kwargs}
        config, variables = load_weights(path, **overrides)
        return cls(config, variables, **kwargs)

    @classmethod
    def from_pretrained(cls, version='1.4', **kwargs):
        """An official release ('1', '1.2', '1.3', '1.4'), downloaded and converted on first use."""
        if version not in RELEASES:
            raise ValueError(f'unknown GFPGAN version {version!r}; choose from {", ".join(RELEASES)}')
        return cls.from_checkpoint(pretrained_path(version), **kwargs)

    def _restore_faces(self, variables, faces, indices, fidelity):
        noise = self.noise
        if noise == 'random':
            # Each face's noise comes from its own key, so it does not depend on the batch; the batch then runs
            # as one ordinary batched program, with that noise in place of the stored buffers. (A vmap over
            # single-face calls would turn every single-sample modulated kernel into a slow grouped conv.)
            variables = dict(variables, noise=self._face_noise(variables['noise'], indices))
            noise = 'fixed'
        out = self.model.apply(variables, to_model_input(faces), noise=noise, fidelity=fidelity)
        return to_uint8(out.image)

    def _face_noise(self, stored, indices):
        """Noise shaped like the stored buffers, (1, r, r, 1) each, drawn for every face: (b, r, r, 1)."""
        flat = traverse_util.flatten_dict(stored)
        face_keys = jax.vmap(lambda index: jax.random.fold_in(self._face_key, index))(indices)
        drawn = {}
        for number, (path, buffer) in enumerate(sorted(flat.items())):
            keys = jax.vmap(lambda key: jax.random.fold_in(key, number))(face_keys)
            drawn[path] = jax.vmap(lambda key: jax.random.normal(key, buffer.shape[1:], buffer.dtype))(keys)
        return traverse_util.unflatten_dict(drawn)

    def _forward_pass(self, variables, images, key):
        return self.model.apply(variables, images, noise=self.noise, rngs={'noise': key})

    def apply(self, images, key=None):
        """The raw forward pass on [-1, 1] float images (b, s, s, 3), compiled once per shape: a `Restoration`
        (image, rgbs, latent); with no images, one of empty arrays."""
        images = images if hasattr(images, 'dtype') else np.asarray(images)
        size = self.config.out_size
        if not jnp.issubdtype(images.dtype, jnp.floating) or images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f'expected float images in [-1, 1] of shape (b, {size}, {size}, 3), got {images.dtype} '
                             f'{images.shape}; `restore` takes uint8 faces')
        key = self._next_key() if key is None else key
        if not len(images):
            one = jax.ShapeDtypeStruct((1,) + images.shape[1:], images.dtype)
            shapes = jax.eval_shape(self._forward_pass, self.variables, one, key)
            return jax.tree.map(lambda leaf: jnp.zeros((0,) + leaf.shape[1:], leaf.dtype), shapes)
        return self._forward(self.variables, images, key)

    def restore(self, faces, indices=None, fidelity=None):
        """uint8 RGB faces (b, s, s, 3), s = the model's out_size -> restored uint8 RGB faces.

        `indices` (b,) number the faces for their random noise, whole numbers in [0, 2**31); by default they continue
        from the last call. No faces give no faces back. `fidelity` in [0, 1] (see `inference.fidelity`): None or 1
        is the official output; other values share one compiled program.
        """
        return np.asarray(self.restore_async(faces, indices, fidelity))

    def restore_async(self, faces, indices=None, fidelity=None):
        """As `restore`, but returns the device array at once, while the device is still computing it: the
        caller can prepare the next batch meanwhile."""
        faces = np.asarray(faces)
        fidelity = check_fidelity(fidelity)
        size = self.config.out_size
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
            raise ValueError(f'expected uint8 faces of shape (b, {size}, {size}, 3), got {faces.dtype} '
                             f'{faces.shape}')
        indices = np.arange(self._faces, self._faces + len(faces)) if indices is None else np.asarray(indices)
        if indices.shape != (len(faces),) or indices.size and not (
                np.issubdtype(indices.dtype, np.integer) and 0 <= indices.min() and indices.max() < 2 ** 31):
            raise ValueError(f'indices must be {len(faces)} whole numbers in [0, 2**31), one per face; got '
                             f'{indices.dtype} {indices.shape}')
        if not len(faces):
            return np.zeros(faces.shape, np.uint8)
        self._faces = int(np.max(indices, initial=self._faces - 1)) + 1
        return self._restore_uint8(self.variables, faces, indices.astype(np.int32),
                                   None if fidelity is None else np.float32(fidelity))

    def _next_key(self):
        self._calls += 1
        return jax.random.fold_in(self._apply_key, self._calls)
