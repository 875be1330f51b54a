"""GFPGAN's ResNetArcFace state dict (arcface_resnet18.pth) <-> our variables, strictly."""
import re

import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import ConversionError, convert, export, variable_shapes
from gfpgan_jax.models.arcface import INPUT_SIZE, STAGES, ResNetArcFace

_BLOCK = re.compile(r'layer(\d)\.(\d+)\.bn0\.weight')


def detect_arcface(state, **fields):
    """The ResNetArcFace whose weights `state` holds (its IRBlocks per stage counted); `fields` set the rest."""
    blocks = [0] * len(STAGES)
    for key in state:
        if match := _BLOCK.fullmatch(key):
            blocks[int(match[1]) - 1] = max(blocks[int(match[1]) - 1], int(match[2]) + 1)
    if not all(blocks):
        sample = ', '.join(sorted(state)[:4])
        raise ConversionError(f'not a ResNetArcFace state dict with IRBlocks in every stage (keys such as {sample})')
    return ResNetArcFace(layers=tuple(blocks), **fields)


def convert_arcface(state, model=ResNetArcFace()):
    """`model`'s variables (params and BatchNorm statistics) from an official ResNetArcFace state dict ({key:
    numpy array}); strict: a missing, unused or misshapen key raises ConversionError."""
    faces = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 1), jnp.float32)
    return convert(state, variable_shapes(model, faces), f'ResNetArcFace(layers={list(model.layers)})')


def export_arcface(variables):
    """The official ResNetArcFace state dict (numpy) of our variables, BatchNorm step counters included."""
    return export(variables)
