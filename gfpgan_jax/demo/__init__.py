"""The web page for restoring photos without writing code: `python -m gfpgan_jax.demo` (needs the `demo` extra)."""
