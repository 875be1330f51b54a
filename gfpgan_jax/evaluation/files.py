"""The official files the metrics need (network weights, NIQE's pristine model), fetched once into the cache."""
import os
import urllib.parse

from gfpgan_jax.files.releases import HELPER_WEIGHTS, cache_dir, fetch_all


def official_path(name):
    """Where `HELPER_WEIGHTS[name]` lives in the cache: under its official file name (the URL's)."""
    return os.path.join(cache_dir(), os.path.basename(urllib.parse.urlparse(HELPER_WEIGHTS[name]).path))


def missing_files(names):
    """The downloads (url, path, what to do instead) of the files among `names` not in the cache yet, for
    `releases.fetch_all`, which reports every failure at once."""
    return [(HELPER_WEIGHTS[name], official_path(name), 'put it at {path}') for name in dict.fromkeys(names)
            if not os.path.isfile(official_path(name))]


def official_file(name):
    """Path of `HELPER_WEIGHTS[name]` in the cache, downloaded on first use."""
    fetch_all(missing_files([name]))
    return official_path(name)
