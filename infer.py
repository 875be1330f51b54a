"""Restore faces with GFPGAN in JAX. See `python infer.py --help`."""
import sys

from gfpgan_jax.cli.infer import main

if __name__ == '__main__':
    sys.exit(main())
