"""The benchmarks compare like with like: their two modulated convolutions agree, and the batch search stops at
the first out-of-memory error."""
import importlib.util
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from gfpgan_jax.models.stylegan2_clean import modulate_and_convolve

BENCH = os.path.join(os.path.dirname(__file__), '..', 'bench')


def load_bench(name):
    if BENCH not in sys.path:  # the benchmarks import their shared helpers (timing.py) as scripts do
        sys.path.insert(0, BENCH)
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


def test_made_faces_are_reproducible_and_each_its_own():
    made_faces = load_bench('made_faces')
    first = [made_faces.draw_face(np.random.default_rng(3), 64) for _ in range(2)]
    rng = np.random.default_rng(3)
    again = made_faces.draw_face(rng, 64)
    other = made_faces.draw_face(rng, 64)
    assert first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
    np.testing.assert_array_equal(first[0], first[1])
    np.testing.assert_array_equal(first[0], again)
    assert np.abs(first[0].astype(int) - other).mean() > 10  # another geometry and colours, not a noisy copy


def test_fidelity_table_of_a_small_model():
    """The trade-off table on 64 px faces: fidelity 1 is the official output, 0 is not, and NIQE is measured on
    faces enlarged to two 96 px blocks."""
    import dataclasses

    import jax

    from gfpgan_jax.data.degradations import CELEBA_TEST
    from gfpgan_jax.models.generator import build_model
    from gfpgan_jax.models.options import ModelConfig

    fidelity, made_faces = load_bench('fidelity'), load_bench('made_faces')
    config = ModelConfig(out_size=64, channel_multiplier=1, narrow=1 / 16, num_style_feat=64, num_mlp=2)
    variables = build_model(config).init({'params': jax.random.key(0), 'noise': jax.random.key(1)},
                                         jnp.zeros((1, 64, 64, 3)))
    rng = np.random.default_rng(0)
    gt = np.stack([made_faces.draw_face(rng, 64) for _ in range(2)])
    degradation = dataclasses.replace(CELEBA_TEST, out_size=64, blur_kernel_size=11, blur_sigma=(0.5, 2.0),
                                      downsample_range=(1.0, 4.0))
    table = fidelity.fidelity_table(config, variables, gt, [0.0, 1.0], degradation, batch_size=2,
                                    niqe_params=fidelity.basicsr_niqe_params())
    assert [row['fidelity'] for row in table] == ['input', 0.0, 1.0]
    assert table[2]['psnr_to_official'] == 99.0 and table[1]['psnr_to_official'] < 40
    assert all(np.isfinite(row['niqe']) and row['sharpness'] > 0 for row in table)
