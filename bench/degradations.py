"""Training-degradation throughput: gfpgan-jax's batched, compiled degradation against the official
FFHQDegradationDataset's per-core rate, in one run, on the same 512 x 512 faces.

Ours: sample_params + apply_degradations for a batch, compiled once, a new key every call, timed until the batch is
finished on the device (faces/s of the whole batch). The official: FFHQDegradationDataset.__getitem__ on one CPU
thread (OpenCV and torch pinned to one), its file reading replaced by the already decoded faces, so that only the
degradation is timed; a data loader runs one such worker per core, so faces/s per core is its unit.

    python bench/degradations.py --batch 12 --json degradations.json
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import official  # noqa: E402,F401  (the official stack, importable on any torch)
from basicsr.data import degradations as basicsr_degradations  # noqa: E402
from gfpgan.data import ffhq_degradation_dataset  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from gfpgan_jax.data import degradations  # noqa: E402


def faces(size):
    """The bundled example faces (RGB uint8), resized to `size`."""
    folder = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned')
    return [cv2.resize(cv2.imread(os.path.join(folder, f'{name}.png')), (size, size),
                       interpolation=cv2.INTER_AREA)[..., ::-1] for name in ('grace_hopper', 'astronaut')]


def bench_ours(config, images, batch, repeats):
    gt = jax.device_put(jnp.asarray(np.stack([images[k % len(images)] for k in range(batch)])))

    def run(key):
        return degradations.apply_degradations(degradations.sample_params(key, batch, config), gt, config)

    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.key(0)))  # compiles both programs
    compile_s = time.perf_counter() - start
    seconds = []
    for repeat in range(repeats):
        key = jax.random.key(repeat + 1)
        start = time.perf_counter()
        jax.block_until_ready(run(key))
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return dict(name='gfpgan-jax (compiled batch)', batch=batch, median_s=median, faces_per_s=batch / median,
                ms_per_face=1e3 * median / batch, compile_s=compile_s, threads='all')


def official_dataset(config, images):
    """The official dataset with `config`'s settings over in-memory faces (keys '0', '1', ...)."""
    folder = tempfile.mkdtemp()
    opt = dict(dataroot_gt=folder, io_backend={'type': 'disk'}, use_hflip=config.use_hflip, mean=config.mean,
               std=config.std, out_size=config.out_size, blur_kernel_size=config.blur_kernel_size,
               kernel_list=list(config.kernel_list), kernel_prob=list(config.kernel_prob),
               blur_sigma=list(config.blur_sigma), downsample_range=list(config.downsample_range),
               noise_range=list(config.noise_range), jpeg_range=list(config.jpeg_range),
               color_jitter_prob=config.color_jitter_prob, color_jitter_shift=config.color_jitter_shift,
               color_jitter_pt_prob=config.color_jitter_pt_prob, gray_prob=config.gray_prob, gt_gray=config.gt_gray)
    dataset = ffhq_degradation_dataset.FFHQDegradationDataset(opt)
    dataset.paths = [str(k) for k in range(len(images))]
    dataset.file_client = types.SimpleNamespace(get=lambda path: path)
    decoded = [np.ascontiguousarray(image[..., ::-1], np.float32) / 255 for image in images]  # BGR, as cv2 reads
    ffhq_degradation_dataset.imfrombytes = lambda path, float32: decoded[int(path)].copy()
    # OpenCV >= 4.5.5 refuses basicsr's float JPEG quality; the versions it was written for truncated it.
    shim = types.ModuleType('cv2')
    shim.__dict__.update(cv2.__dict__)
    shim.imencode = lambda ext, image, params: cv2.imencode(ext, image, [int(p) for p in params])
    basicsr_degradations.cv2 = shim
    return dataset


def bench_official(config, images, samples):
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    dataset = official_dataset(config, images)
    dataset[0]  # warm-up
    seconds = []
    for k in range(samples):
        start = time.perf_counter()
        dataset[k % len(images)]
        seconds.append(time.perf_counter() - start)
    mean = statistics.fmean(seconds)
    return dict(name='official dataset (1 thread)', batch=1, median_s=statistics.median(seconds),
                faces_per_s=1 / mean, ms_per_face=1e3 * mean, compile_s=None, threads=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch', type=int, default=12)
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--official-samples', type=int, default=24)
    p.add_argument('--json', help='write every figure here')
    args = p.parse_args()

    config = degradations.TRAINING if args.size == 512 else degradations.DegradationConfig(out_size=args.size)
    images = faces(args.size)
    rows = [bench_ours(config, images, args.batch, args.repeats)]
    print(rows[-1], flush=True)
    rows.append(bench_official(config, images, args.official_samples))
    print(rows[-1], flush=True)
    result = dict(device=str(jax.devices()[0].device_kind), host=platform.node(), cpu_count=os.cpu_count(),
                  jax=jax.__version__, opencv=cv2.__version__, date=time.strftime('%Y-%m-%d'), size=args.size,
                  rows=rows, official_cores_to_match=rows[0]['faces_per_s'] / rows[1]['faces_per_s'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)

    print(f"\n{result['device']} ({result['cpu_count']} cpus), jax {result['jax']}, OpenCV {result['opencv']}, "
          f"{result['date']}; {args.size} x {args.size} faces")
    print(f"{'implementation':<30}{'batch':>6}{'faces/s':>10}{'ms/face':>10}{'compile s':>11}")
    for r in rows:
        compile_s = f"{r['compile_s']:.1f}" if r['compile_s'] else '-'
        print(f"{r['name']:<30}{r['batch']:>6}{r['faces_per_s']:>10.2f}{r['ms_per_face']:>10.1f}{compile_s:>11}")
    print(f"official data-loader workers (one per core) to match: {result['official_cores_to_match']:.1f}")


if __name__ == '__main__':
    main()
