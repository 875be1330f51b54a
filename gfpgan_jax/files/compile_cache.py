"""JAX's persistent compilation cache for the command-line tools: a run loads the programs an earlier run compiled
(the restorer, the detector for each photo size, the parser) instead of compiling them again.

The cache is the folder `xla-cache` in the weights cache (`releases.cache_dir()`, ~/.cache/gfpgan_jax or
$GFPGAN_JAX_HOME). The environment variable GFPGAN_JAX_COMPILE_CACHE names another folder, or turns the cache off
with `off`; JAX's own JAX_COMPILATION_CACHE_DIR, when set, is left to decide.
"""
import os

import jax

from gfpgan_jax.files.releases import cache_dir

ENVIRONMENT_VARIABLE = 'GFPGAN_JAX_COMPILE_CACHE'
OFF = ('off', '0', 'no', 'false')


def enable():
    """Turn the cache on; returns its folder, or None where it is turned off. An OSError if the folder cannot be
    made."""
    if jax.config.jax_compilation_cache_dir:  # JAX_COMPILATION_CACHE_DIR, or the program's own choice
        return jax.config.jax_compilation_cache_dir
    setting = os.environ.get(ENVIRONMENT_VARIABLE, '')
    if setting.lower() in OFF:
        return None
    folder = setting or os.path.join(cache_dir(), 'xla-cache')
    os.makedirs(folder, exist_ok=True)
    jax.config.update('jax_compilation_cache_dir', folder)
    # Every program, not only those that take a second to compile: a run compiles dozens of small ones (resizes,
    # noise, post-processing) that add up to seconds.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    return folder
