"""How the helper networks' wrappers load weights: from a state dict, an official .pth, or the official release."""
import os

from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.files.pth import CheckpointError, load_pth, select_state_dict
from gfpgan_jax.files.releases import helper_weights_path


class FromOfficialWeights:
    """`from_checkpoint` and `from_pretrained` for a class that defines `from_state_dict(state, **kwargs)` and
    names its official file in `RELEASE` (a key of `releases.HELPER_WEIGHTS`)."""
    RELEASE: str

    @classmethod
    def from_checkpoint(cls, path, **kwargs):
        """From an official .pth (read without torch): its `params_ema`, else `params`, else the whole dict."""
        path = os.fspath(path)
        try:
            return cls.from_state_dict(select_state_dict(load_pth(path), path), **kwargs)
        except ConversionError as error:
            raise CheckpointError(path, str(error)) from None

    @classmethod
    def from_pretrained(cls, **kwargs):
        """The official pipeline's weights, downloaded into the cache on first use."""
        return cls.from_checkpoint(helper_weights_path(cls.RELEASE), **kwargs)
