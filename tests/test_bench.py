"""The benchmarks compare like with like: their two modulated convolutions agree, and the batch search stops at
the first out-of-memory error."""
import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

from gfpgan_jax.models.stylegan2_clean import modulate_and_convolve

BENCH = os.path.join(os.path.dirname(__file__), '..', 'bench')


def load_bench(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('batch', [1, 3])
def test_modulated_conv_formulations_agree_with_the_library(batch):
    bench = load_bench('modulated_conv')
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, 8, 8, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 6, 5)), jnp.float32)
    styles = jnp.asarray(rng.uniform(0.5, 1.5, (batch, 6)), jnp.float32)
    ours = modulate_and_convolve(x, kernel, styles, True, jnp.float32)
    for variant in (bench.activations, bench.grouped):
        assert np.abs(np.asarray(variant(x, kernel, styles, jnp.float32)) - np.asarray(ours)).max() < 1e-5


def test_decoder_convs_are_the_v14_decoder():
    convs = load_bench('modulated_conv').decoder_convs()
    assert len(convs) == 15 and convs[0] == (4, 512, 512) and convs[-1] == (512, 64, 64)


def test_largest_batch_stops_at_out_of_memory():
    bench = load_bench('inference')

    def run(batch):
        if batch > 300:
            raise RuntimeError('RESOURCE_EXHAUSTED: out of memory while trying to allocate')
        return {'batch': batch}

    def broken(batch):
        raise ValueError('a bug, not a full device')

    assert bench.largest_batch(run, 64) == {'batch': 256}
    with pytest.raises(ValueError):
        bench.largest_batch(broken, 64)
