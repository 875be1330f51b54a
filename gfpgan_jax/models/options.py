"""The GFPGAN generator's constructor options, written once: the modules, the converter, the weight files and
`configs/` all read them from here."""
import dataclasses
import json

CLEAN = 'clean'  # GFPGANv1Clean: v1.2, v1.3, v1.4
ORIGINAL = 'original'  # GFPGANv1 of the paper: v1
# The FIR filter of the original architecture's up- and downsampling.
RESAMPLE_KERNEL = (1, 3, 3, 1)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Constructor options of the official classes (`fix_decoder` aside, an optimizer matter). Defaults are those
    the official inference tool builds the released models with."""
    arch: str = CLEAN
    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: int = 2
    num_mlp: int = 8
    input_is_latent: bool = True
    different_w: bool = True
    narrow: float = 1.0
    sft_half: bool = True
    # Original architecture only: learning-rate multiplier of the style MLP (it scales the forward pass too)
    # and the blur kernel of upfirdn2d resampling.
    lr_mlp: float = 0.01
    resample_kernel: tuple = RESAMPLE_KERNEL

    @classmethod
    def from_config(cls, model_config):
        """From the `model` section of a `configs/*.py` get_config() (an ml_collections ConfigDict)."""
        fields = dict(model_config)
        fields['resample_kernel'] = tuple(fields.get('resample_kernel', cls.resample_kernel))
        return cls(**fields)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_config(json.loads(text))
