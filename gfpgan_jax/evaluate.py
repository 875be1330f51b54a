"""`python -m gfpgan_jax.evaluate`: see gfpgan_jax/cli/evaluate.py."""
import sys

from gfpgan_jax.cli.evaluate import main

if __name__ == '__main__':
    sys.exit(main())
