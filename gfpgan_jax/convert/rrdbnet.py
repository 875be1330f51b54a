"""Real-ESRGAN (basicsr's RRDBNet) checkpoints -> the constructor options they imply and Flax variables, strictly."""
import re

import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.files.pth import select_state_dict
from gfpgan_jax.models.rrdbnet import UNSHUFFLE_FACTORS, RRDBNet

# conv_first's input channels per image channel -> scale: scales 2 and 1 fold 2x2 and 4x4 cells into channels.
_SCALE_OF_FOLD = {factor * factor: scale for scale, factor in UNSHUFFLE_FACTORS.items()}
_GROWTH_CONV = re.compile(r'body\.\d+\.rdb\d+\.conv[1-4]\.weight')
_BLOCK = re.compile(r'body\.(\d+)\.')


def _detect_options(state):
    try:
        first, last = state['conv_first.weight'], state['conv_last.weight']
    except KeyError as error:
        sample = ', '.join(sorted(state)[:4])
        raise ConversionError(f'not an RRDBNet state dict: no {error.args[0]} (keys such as {sample})') from None
    num_out_ch, in_channels = last.shape[0], first.shape[1]
    # The image is taken to have as many channels as the output (as in every released Real-ESRGAN); otherwise
    # 12 input channels could be a 3-channel image at scale 2 or a 12-channel one at scale 4.
    fold, rest = divmod(in_channels, num_out_ch)
    if rest or fold not in _SCALE_OF_FOLD:
        raise ConversionError(f'conv_first takes {in_channels} channels, which is not 1, 4 or 16 times the '
                              f'{num_out_ch} that conv_last gives')
    blocks = [int(match.group(1)) for key in state if (match := _BLOCK.match(key))]
    growth = [state[key].shape[0] for key in state if _GROWTH_CONV.fullmatch(key)]
    return dict(num_in_ch=num_out_ch, num_out_ch=num_out_ch, scale=_SCALE_OF_FOLD[fold], num_feat=first.shape[0],
                num_block=max(blocks) + 1 if blocks else 0, num_grow_ch=growth[0] if growth else 32)


def convert_rrdbnet(checkpoint, name='checkpoint'):
    """(options, variables) from an official RRDBNet checkpoint ('params_ema', else 'params', else the dict
    itself): the RRDBNet constructor options read from key names and shapes, and its Flax variables, strictly (a
    missing, unused or misshapen key raises ConversionError). `name` (the file, say) starts error messages."""
    state = select_state_dict(checkpoint, name)
    options = _detect_options(state)
    factor = UNSHUFFLE_FACTORS[options['scale']]
    image = jax.ShapeDtypeStruct((1, factor, factor, options['num_in_ch']), jnp.float32)
    described = ', '.join(f'{key}={value}' for key, value in options.items())
    return options, convert(state, variable_shapes(RRDBNet(**options), image), f'RRDBNet({described})')
