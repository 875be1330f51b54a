import os
import sys

# Parity is checked in fp32 at full matmul precision on the CPU.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')
sys.path.insert(0, os.path.dirname(__file__))  # for tests/official.py and tests/parity_utils.py
