"""Training speed: gfpgan-jax's whole training step against the official GFPGANModel.optimize_parameters, in one run.

Both sides train the train_gfpgan_v1.yml recipe (GFPGANv1 with its decoder frozen, the StyleGAN2 discriminator with
the lazy R1 penalty every 16 iterations, the three facial component discriminators, ArcFace identity, VGG19
perceptual and style losses on the recipe's five layers) in float32 from the same random weights, built as
tests/test_train_step.py builds them (its parity test narrows the VGG layers and computes in float64; both are set
back to the recipe's here), on the same batch of 512 px faces (the bundled examples, repeated to the batch size).
`--narrow` and `--style` shrink the networks' widths for the CPU (the component crops need the recipe's 512 px
faces); 1 and 512 are the recipe's.

An iteration with the R1 penalty and one without are timed separately (median of `--repeats` after a warm-up) and
amortised as the recipe runs them: (15 x plain + 1 x R1) / 16. The degradation of the batch is not timed on either
side (the official does it in its data loader's worker processes; ours runs on the device as part of the trainer's
step, reported on its own line). images/s = batch / amortised seconds.

    python bench/train_step.py --narrow 0.125 --style 64 --batch-size 2 --repeats 2      # CPU
    python bench/train_step.py --batch-size 12 --largest --json train_step.json           # GPU, the recipe's size
"""
import argparse
import functools
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import official  # noqa: E402,F401  (the official stack, importable on any torch)
import test_train_step as recipe  # noqa: E402

from gfpgan_jax.data.degradations import TRAINING, degrade  # noqa: E402
from gfpgan_jax.training.losses import VGG_LAYER_WEIGHTS  # noqa: E402
from gfpgan_jax.training.step import train_step  # noqa: E402

R1_EVERY = 16


def median_seconds(fn, repeats):
    fn()  # warm-up (compilation, torch's allocator)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def amortised(plain, with_r1):
    return ((R1_EVERY - 1) * plain + with_r1) / R1_EVERY


def official_model(device, monkeypatch, tmp_path):
    """test_train_step's official GFPGANModel, moved to `device`; on a GPU torchvision's own roi_align is used."""
    model, vgg19 = recipe.official_model(tmp_path, monkeypatch)
    for value in list(vars(model).values()):
        if isinstance(value, torch.nn.Module):
            value.float()  # in place, as the optimizers hold the parameters
    if device.type != 'cpu':
        import torchvision
        from gfpgan.models import gfpgan_model
        monkeypatch.setattr(gfpgan_model, 'roi_align', torchvision.ops.roi_align)
        model.device = device
        for value in list(vars(model).values()):
            if isinstance(value, torch.nn.Module):
                value.to(device)
    return model, vgg19


def official_iteration(model, batch, device):
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def run(iteration):
        # Fresh tensors each time, as its data loader gives: the R1 iteration sets requires_grad on its gt.
        data = {'lq': torch.from_numpy(batch['lq']).permute(0, 3, 1, 2).contiguous().to(device),
                'gt': torch.from_numpy(batch['gt']).permute(0, 3, 1, 2).contiguous().to(device)}
        for index, name in enumerate(('loc_left_eye', 'loc_right_eye', 'loc_mouth')):
            data[name] = torch.from_numpy(batch['boxes'][:, index]).to(device)
        model.feed_data(data)
        model.optimize_parameters(iteration)
        sync()
    return run


def batch_of(size):
    faces = recipe.make_batch()
    repeat = -(-size // len(faces['gt']))
    return {key: np.concatenate([value] * repeat)[:size].astype(np.float32) for key, value in faces.items()}


def bench(args, device, monkeypatch, tmp_path):
    batch = batch_of(args.batch_size)
    model, vgg19 = official_model(device, monkeypatch, tmp_path)
    state, frozen, networks, objective = recipe.our_setup(model, vgg19)
    rows = []

    if not args.skip_official:
        run = official_iteration(model, batch, device)
        plain = median_seconds(lambda: run(R1_EVERY + 1), args.repeats)
        with_r1 = median_seconds(lambda: run(R1_EVERY), args.repeats)
        rows.append(dict(name='official GFPGANModel (torch eager fp32)', plain_s=plain, r1_s=with_r1))
    del model

    step = jax.jit(functools.partial(train_step, networks=networks, objective=objective), donate_argnums=0)
    inputs = jax.device_put({key: jnp.asarray(value) for key, value in batch.items()})
    holder = {'state': jax.device_put(state)}

    def ours(first_iteration):
        def run():
            current = holder['state'].replace(step=jnp.asarray(first_iteration - 1, jnp.int32))
            holder['state'], metrics = step(current, frozen, inputs, jax.random.key(0))
            jax.block_until_ready(metrics)
        return run

    start = time.perf_counter()
    ours(R1_EVERY + 1)()
    compile_s = time.perf_counter() - start
    plain = median_seconds(ours(R1_EVERY + 1), args.repeats)
    with_r1 = median_seconds(ours(R1_EVERY), args.repeats)
    rows.append(dict(name='gfpgan-jax train_step (fp32)', plain_s=plain, r1_s=with_r1, compile_s=compile_s))
    if args.largest:
        rows.append(largest_batch(step, holder['state'], frozen, batch, args))

    gt = jnp.asarray(np.round((batch['gt'] + 1) * 127.5).astype(np.uint8))
    degrade_batch = jax.jit(lambda key, faces: degrade(key, faces, config=TRAINING))
    seconds = median_seconds(lambda: jax.block_until_ready(degrade_batch(jax.random.key(0), gt)), args.repeats)
    rows.append(dict(name='gfpgan-jax degradation of the batch (on the device)', plain_s=seconds, r1_s=seconds))
    rows = [row for row in rows if row is not None]
    for row in rows:
        row['batch'] = row.pop('size', args.batch_size)
        row['amortised_s'] = amortised(row['plain_s'], row['r1_s'])
        row['images_per_s'] = row['batch'] / row['amortised_s']
    return rows


def largest_batch(step, state, frozen, batch, args):
    """Our step at doubling batch sizes until the device runs out of memory: the largest that ran."""
    best = None
    size = args.batch_size
    while size <= args.largest_limit:
        inputs = jax.device_put({key: jnp.asarray(value) for key, value in batch_of(size).items()})
        try:
            state, metrics = step(state, frozen, inputs, jax.random.key(0))
            jax.block_until_ready(metrics)
            start = time.perf_counter()
            for _ in range(args.repeats):  # the R1 iteration among them as often as it falls
                state, metrics = step(state, frozen, inputs, jax.random.key(0))
            jax.block_until_ready(metrics)
        except jax.errors.JaxRuntimeError as error:
            if 'RESOURCE_EXHAUSTED' not in str(error) and 'out of memory' not in str(error).lower():
                raise
            break
        seconds = (time.perf_counter() - start) / args.repeats
        best = dict(name=f'gfpgan-jax train_step, largest batch ({size})', plain_s=seconds, r1_s=seconds, size=size)
        size *= 2
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-size', type=int, default=12)
    p.add_argument('--narrow', type=float, default=1.0, help='width of every network (the recipe: 1)')
    p.add_argument('--style', type=int, default=512, help='num_style_feat (the recipe: 512)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--skip-official', action='store_true')
    p.add_argument('--largest', action='store_true', help='also find the largest batch our step runs at (GPU)')
    p.add_argument('--largest-limit', type=int, default=768)
    p.add_argument('--json', help='write every figure here')
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count())  # tests/official.py pins one thread for parallel test workers
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    warnings.filterwarnings('ignore', 'Explicitly requested dtype float64')  # the parity test's float64: float32 here
    with pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as tmp:
        monkeypatch.setattr(recipe, 'PERCEPTUAL_LAYERS', dict(VGG_LAYER_WEIGHTS))
        monkeypatch.setitem(recipe.TRAIN['perceptual_opt'], 'layer_weights', dict(VGG_LAYER_WEIGHTS))
        monkeypatch.setattr(recipe, 'NARROW', args.narrow)
        monkeypatch.setattr(recipe, 'STYLE', args.style)
        monkeypatch.setitem(recipe.GENERATOR, 'narrow', args.narrow)
        monkeypatch.setitem(recipe.GENERATOR, 'num_style_feat', args.style)
        # fp32 means fp32 on both sides: no TF32 in XLA's matmuls and convolutions (torch's eager fp32 has none).
        with jax.default_matmul_precision('highest'):
            rows = bench(args, device, monkeypatch, pathlib.Path(tmp))
    print(f'device: {jax.devices()[0].device_kind} (jax), {device} (torch, {torch.get_num_threads()} threads); '
          f'narrow {args.narrow}, num_style_feat {args.style}, batch {args.batch_size}, 512 px')
    print(f'{"":52} {"plain s":>9} {"R1 s":>9} {"amortised":>10} {"images/s":>9}')
    for row in rows:
        print(f'{row["name"]:52} {row["plain_s"]:9.3f} {row["r1_s"]:9.3f} {row["amortised_s"]:10.3f} '
              f'{row["images_per_s"]:9.2f}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(batch=args.batch_size, narrow=args.narrow, style=args.style, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
