"""`convert_weights.py`: official .pth -> gfpgan-jax .safetensors, or back (an output ending in .pth)."""
import argparse
import os
import sys

from gfpgan_jax.cli.usage import ArgumentParser
from gfpgan_jax.convert import generator
from gfpgan_jax.files.pth import CheckpointError, save_pth
from gfpgan_jax.files.weights import is_torch_checkpoint, load_weights, save_converted


def parse_args(argv):
    p = ArgumentParser(prog='convert_weights.py', description=__doc__)
    p.add_argument('--input', required=True,
                   help='official checkpoint (.pth) or converted file (.safetensors), told apart by their contents, '
                        "or a training run's folder (its latest checkpoint's EMA generator)")
    p.add_argument('--output', required=True,
                   help='.safetensors to convert to gfpgan-jax; .pth (.pt, .ckpt, .bin) to export in the '
                        'official layout')
    p.add_argument('--input-is-latent', action=argparse.BooleanOptionalAction, default=True,
                   help='whether the U-Net code bypasses the style MLP; the official tool builds every released '
                        'model with it on (the weights do not record it)')
    return p.parse_args(argv)


def main(argv=None):
    try:
        args = parse_args(argv)
    except SystemExit as exit:  # a usage error (2) or --help (0), already printed
        return exit.code
    if os.path.realpath(args.input) == os.path.realpath(args.output):
        print(f'error: {args.output}: is the input; choose another --output', file=sys.stderr)
        return 2
    try:
        if os.path.isdir(args.input):  # a training run: the EMA generator of its latest checkpoint
            from gfpgan_jax.training.export import load_run_weights  # imports orbax only for this
            config, variables = load_run_weights(args.input)
        else:
            config, variables = load_weights(args.input, input_is_latent=args.input_is_latent)
        if is_torch_checkpoint(args.output):
            save_pth(generator.export_state_dict(config, variables), args.output)
        else:
            save_converted(args.output, config, variables)
    except CheckpointError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:
        print(f'error: {args.output}: cannot write it: {error.strerror or error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # nothing is written half: the output appears whole or not at all
        print('interrupted; nothing written', file=sys.stderr)
        return 130
    print(f'{args.input} -> {args.output}: {config}')
    return 0
