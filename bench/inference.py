"""Aligned-face restoration speed: gfpgan-jax against the official PyTorch GFPGANv1Clean, in one run.

Both get the same random weights in the v1.3/v1.4 configuration (out 512, channel multiplier 2). Times are
medians over `--repeats` calls after a warm-up, each ending when the result is on the device and finished
(`block_until_ready` / `cuda.synchronize`). Runs on the CPU or on one GPU, whichever JAX and torch see.

    python bench/inference.py --batch-sizes 1,8,32 --json bench/results.json
"""
import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import official  # noqa: E402  (the official stack, importable on any torch)
from parity_utils import randomize, state_dict_numpy  # noqa: E402
from timing import seconds_of  # noqa: E402 (bench/)

from gfpgan_jax.convert import generator as convert  # noqa: E402
from gfpgan_jax.models.generator import build_model  # noqa: E402

GFLOP_PER_FACE = 395.5  # forward pass at 512 px, counted with torch's FLOP counter
V14 = dict(out_size=512, num_style_feat=512, channel_multiplier=2, num_mlp=8, input_is_latent=True,
           different_w=True, narrow=1, sft_half=True)


def summary(name, batch, seconds, **extra):
    median = statistics.median(seconds)
    p90 = float(np.percentile(seconds, 90))
    return dict(name=name, batch=batch, median_s=median, p90_s=p90, faces_per_s=batch / median,
                ms_per_face=1e3 * median / batch, **extra)


def bench_ours(config, variables, batch, dtype, repeats):
    model = build_model(config, dtype)
    forward = jax.jit(lambda v, x: model.apply(v, x, noise='fixed').image)
    x = jax.device_put(jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, 512, 512, 3)), jnp.float32))
    variables = jax.device_put(variables)
    start = time.perf_counter()
    # fp32 means fp32 (no TF32) like the official eager fp32; bf16 must not be promoted to fp32 matmuls.
    with jax.default_matmul_precision('highest' if dtype == jnp.float32 else 'default'):
        compiled = forward.lower(variables, x).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one on older jax
    # XLA plans the program's memory ahead: weights and input, output, and the scratch its buffers share. The
    # device's own peak counter never resets, so later rows would inherit the largest earlier one.
    memory = compiled.memory_analysis()
    peak = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    _, seconds = seconds_of(lambda: compiled(variables, x).block_until_ready(), repeats)
    return summary(f'gfpgan-jax {jnp.dtype(dtype).name}', batch, seconds, compile_s=compile_s, peak_bytes=peak,
                   low_precision=dtype != jnp.float32, xla_gflop_per_face=cost['flops'] / batch / 1e9)


def bench_official(module, batch, mode, repeats, device):
    x = torch.rand(batch, 3, 512, 512, device=device) * 2 - 1
    run = module
    compile_s = None
    if mode == 'compile fp16':
        run = torch.compile(module)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def call():
        with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=mode != 'eager fp32'):
            run(x, return_rgb=False, randomize_noise=False)
        sync()

    if mode == 'compile fp16':
        start = time.perf_counter()
        call()
        compile_s = time.perf_counter() - start
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    _, seconds = seconds_of(call, repeats)
    peak = torch.cuda.max_memory_allocated() if device.type == 'cuda' else None
    return summary(f'official {mode}', batch, seconds, compile_s=compile_s, peak_bytes=peak,
                   low_precision=mode != 'eager fp32')


def is_out_of_memory(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or 'RESOURCE_EXHAUSTED' in str(error)


def largest_batch(run, start):
    """The row of the largest batch, doubling from `start`, that `run(batch)` fits in device memory."""
    row, batch = None, start
    while True:
        try:
            row, batch = run(batch), batch * 2
        except Exception as error:  # noqa: BLE001 (jax and torch raise their own runtime errors)
            if not is_out_of_memory(error):
                raise
            torch.cuda.empty_cache()
            return row


def matmul_tflops(dtype, n=8192, repeats=5):
    a = jnp.ones((n, n), dtype)
    with jax.default_matmul_precision('highest' if dtype == jnp.float32 else 'default'):
        f = jax.jit(lambda a: a @ a).lower(a).compile()
    _, seconds = seconds_of(lambda: f(a).block_until_ready(), repeats)
    return 2 * n ** 3 / statistics.median(seconds) / 1e12


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-sizes', default='1,8,32')
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--official-modes', default=None,
                   help="comma list of 'eager fp32', 'autocast fp16', 'compile fp16' (default: eager fp32 on the CPU, "
                        "all three on a GPU)")
    p.add_argument('--no-bf16', action='store_true', help='time only fp32 for gfpgan-jax')
    p.add_argument('--largest', action='store_true',
                   help='GPU only: also time each variant at the largest batch that fits, doubling from twice the '
                        'largest of --batch-sizes')
    p.add_argument('--json', help='write every figure here')
    args = p.parse_args()

    torch.set_num_threads(os.cpu_count())  # tests/official.py pins one thread for parallel test workers
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    on_gpu = device.type == 'cuda'
    modes = (args.official_modes.split(',') if args.official_modes
             else ['eager fp32', 'autocast fp16', 'compile fp16'] if on_gpu else ['eager fp32'])
    if args.largest and not on_gpu:
        p.error('--largest needs a GPU (on the CPU it would fill the host memory)')

    module = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(fix_decoder=False, **V14))
    config, variables = convert.convert_state_dict(state_dict_numpy(module))
    module = module.to(device)

    variants = [functools.partial(bench_ours, config, variables, dtype=dtype, repeats=args.repeats)
                for dtype in [jnp.float32] + ([] if args.no_bf16 else [jnp.bfloat16])]
    variants += [functools.partial(bench_official, module, mode=mode, repeats=args.repeats, device=device)
                 for mode in modes]
    batch_sizes = [int(b) for b in args.batch_sizes.split(',')]
    rows = []
    for batch in batch_sizes:
        for run in variants:
            rows.append(run(batch))
            print(rows[-1], flush=True)
    for run in variants if args.largest else []:
        row = largest_batch(run, 2 * max(batch_sizes))
        if row is not None:
            rows.append(dict(row, largest=True))
            print(rows[-1], flush=True)

    rates = {'fp32': matmul_tflops(jnp.float32)}
    if on_gpu:
        rates['bf16'] = matmul_tflops(jnp.bfloat16)
    result = dict(device=str(jax.devices()[0].device_kind), torch_device=str(device), host=platform.node(),
                  cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), jax=jax.__version__,
                  torch=torch.__version__, date=time.strftime('%Y-%m-%d'), matmul_tflops=rates, rows=rows)
    for row in rows:
        rate = rates.get('bf16', rates['fp32']) if row.pop('low_precision') else rates['fp32']
        row['share_of_matmul_peak'] = row['faces_per_s'] * GFLOP_PER_FACE / 1e3 / rate
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)

    print(f"\n{result['device']} ({result['cpu_count']} cpus), jax {result['jax']}, torch {result['torch']}, "
          f"{result['date']}; matmul peak TFLOP/s: {rates}")
    print(f"{'implementation':<26}{'batch':>6}{'faces/s':>10}{'ms/face':>10}{'p90 ms/call':>13}{'compile s':>11}"
          f"{'peak GiB':>10}{'of peak':>9}")
    for r in rows:
        peak = f"{r['peak_bytes'] / 2**30:.2f}" if r['peak_bytes'] else '-'
        comp = f"{r['compile_s']:.1f}" if r['compile_s'] else '-'
        print(f"{r['name']:<26}{r['batch']:>6}{r['faces_per_s']:>10.2f}{r['ms_per_face']:>10.1f}"
              f"{1e3 * r['p90_s']:>13.1f}{comp:>11}{peak:>10}{r['share_of_matmul_peak']:>9.1%}")


if __name__ == '__main__':
    main()
