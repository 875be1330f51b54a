"""Which way to compute StyleGAN2's modulated convolution: the evidence behind `modulate_and_convolve`.

Two formulations of the same linear map, timed on every 3x3 modulated convolution of the v1.3/v1.4 decoder
(out 512, channel multiplier 2; two per resolution, the first at 4 px being the one without upsampling):

- `activations`: scale the input channels by the style, run one convolution whose kernel the whole batch
  shares, scale the output channels by the demodulation factor;
- `grouped`: build each sample's modulated, demodulated kernel and run one grouped convolution with the batch
  folded into the channels (the official PyTorch's way; with one sample, a plain convolution).

`modulate_and_convolve` takes the faster of the two measured here: kernels for one sample, activations for a
batch. Both are checked against each other before timing. Runs on whatever device JAX sees.

    python bench/modulated_conv.py --batch-sizes 1,8,32 --json modconv.json
"""
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.models.style import stylegan_channels
from timing import seconds_of
from gfpgan_jax.models.stylegan2_clean import demodulation, same_conv


def grouped(x, kernel, styles, dtype):
    """Per-sample kernels (b, k, k, cin, cout), demodulated, as one convolution with b groups."""
    b, h, w, cin = x.shape
    k, cout = kernel.shape[0], kernel.shape[-1]
    weights = kernel[None] * styles[:, None, None, :, None]
    weights = weights * demodulation(kernel, styles)[:, None, None, None, :]
    weights = weights.transpose(1, 2, 3, 0, 4).reshape(k, k, cin, b * cout)  # groups follow the batch
    folded = x.transpose(1, 2, 0, 3).reshape(1, h, w, b * cin)
    out = jax.lax.conv_general_dilated(folded.astype(dtype), weights.astype(dtype), (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=b)
    return out.reshape(h, w, b, cout).transpose(2, 0, 1, 3)


def activations(x, kernel, styles, dtype):
    out = same_conv((x * styles[:, None, None, :]).astype(dtype), kernel.astype(dtype))
    return out * demodulation(kernel, styles)[:, None, None, :].astype(out.dtype)


def decoder_convs(channel_multiplier=2, out_size=512):
    """(resolution, cin, cout) of each 3x3 modulated convolution, at the resolution it computes on."""
    channels = stylegan_channels(channel_multiplier, 1)
    convs = [(4, channels[4], channels[4])]
    res = 8
    while res <= out_size:
        convs += [(res, channels[res // 2], channels[res]), (res, channels[res], channels[res])]
        res *= 2
    return convs


def median_seconds(fn, args, repeats):
    """The median of `repeats` calls of fn(*args), after one that compiles."""
    return statistics.median(seconds_of(lambda: fn(*args).block_until_ready(), repeats)[1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-sizes', default='1,8,32')
    p.add_argument('--dtypes', default='float32,bfloat16')
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--json', help='write every figure here')
    args = p.parse_args()

    rng = np.random.default_rng(0)
    variants = {'activations': activations, 'grouped': grouped}
    rows = []
    for batch in map(int, args.batch_sizes.split(',')):
        for dtype_name in args.dtypes.split(','):
            dtype = jnp.dtype(dtype_name)
            precision = 'highest' if dtype == jnp.float32 else 'default'
            totals = dict.fromkeys(variants, 0.0)
            for res, cin, cout in decoder_convs():
                x = jnp.asarray(rng.standard_normal((batch, res, res, cin)), jnp.float32)
                kernel = jnp.asarray(rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin), jnp.float32)
                styles = jnp.asarray(rng.uniform(0.5, 1.5, (batch, cin)), jnp.float32)
                with jax.default_matmul_precision(precision):
                    compiled = {name: jax.jit(fn, static_argnums=3) for name, fn in variants.items()}
                    outs = {name: fn(x, kernel, styles, dtype).astype(jnp.float32) for name, fn in compiled.items()}
                    gap = float(jnp.max(jnp.abs(outs['activations'] - outs['grouped'])))
                    times = {name: median_seconds(fn, (x, kernel, styles, dtype), args.repeats)
                             for name, fn in compiled.items()}
                for name, seconds in times.items():
                    totals[name] += seconds
                rows.append(dict(batch=batch, dtype=dtype_name, res=res, cin=cin, cout=cout, max_abs_gap=gap,
                                 **{f'{name}_ms': 1e3 * s for name, s in times.items()}))
                print(rows[-1], flush=True)
            rows.append(dict(batch=batch, dtype=dtype_name, res='all',
                             **{f'{name}_ms': 1e3 * seconds for name, seconds in totals.items()}))

    result = dict(device=str(jax.devices()[0].device_kind), jax=jax.__version__, date=time.strftime('%Y-%m-%d'),
                  rows=rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    print(f"\n{result['device']}, jax {result['jax']}, {result['date']}: every 3x3 modulated conv of the v1.4 "
          f"decoder, ms per call")
    print(f"{'batch':>6}{'dtype':>10}{'activations':>13}{'grouped':>10}{'grouped/act':>13}")
    for r in rows:
        if r['res'] == 'all':
            print(f"{r['batch']:>6}{r['dtype']:>10}{r['activations_ms']:>13.2f}{r['grouped_ms']:>10.2f}"
                  f"{r['grouped_ms'] / r['activations_ms']:>13.2f}")


if __name__ == '__main__':
    main()
