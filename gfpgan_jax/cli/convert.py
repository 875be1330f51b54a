"""`convert_weights.py`: official .pth -> gfpgan-jax .safetensors, or back (an output ending in .pth)."""
import argparse
import sys

from gfpgan_jax.convert import generator
from gfpgan_jax.files.pth import CheckpointError, save_pth
from gfpgan_jax.files.weights import is_torch_checkpoint, load_converted, load_weights, save_converted


def parse_args(argv):
    p = argparse.ArgumentParser(prog='convert_weights.py', description=__doc__)
    p.add_argument('--input', required=True, help='official checkpoint (.pth) or converted file (.safetensors)')
    p.add_argument('--output', required=True,
                   help='.safetensors to convert to gfpgan-jax; .pth (.pt, .ckpt, .bin) to export in the '
                        'official layout')
    p.add_argument('--input-is-latent', action=argparse.BooleanOptionalAction, default=True,
                   help='whether the U-Net code bypasses the style MLP; the official tool builds every released '
                        'model with it on (the weights do not record it)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if is_torch_checkpoint(args.output):
            config, variables = load_converted(args.input)
            save_pth(generator.export_state_dict(config, variables), args.output)
        else:
            config, variables = load_weights(args.input, input_is_latent=args.input_is_latent)
            save_converted(args.output, config, variables)
    except CheckpointError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: {args.output}: cannot write it: {error.strerror or error}', file=sys.stderr)
        return 2
    print(f'{args.input} -> {args.output}: {config}')
    return 0
