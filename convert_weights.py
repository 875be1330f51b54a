"""Convert official GFPGAN weights for gfpgan-jax (no torch needed), or export ours back to the official layout."""
import sys

from gfpgan_jax.cli.convert import main

if __name__ == '__main__':
    sys.exit(main())
