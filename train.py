"""Train GFPGAN in JAX. See `python train.py --help`."""
import sys

from gfpgan_jax.cli.train import main

if __name__ == '__main__':
    sys.exit(main())
