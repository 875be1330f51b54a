"""What the fidelity control trades: faithfulness to the ground truth against a no-reference quality score.

Ground-truth aligned faces are degraded with the paper's CelebA-Test protocol (gfpgan_jax.data.degradations
CELEBA_TEST: Gaussian blur sigma 0.2-10, downsampling 1-8x, noise 0-15, JPEG 60-100, each face its own draw from
--seed), rounded to 8 bits as a photo is, and restored at each --fidelities value with the checkpoint's stored
noise. Per value, averaged over the faces:

- PSNR to the ground truth (dB, higher is more faithful; basicsr's calculate_psnr, RGB);
- identity distance to the ground truth (ArcFace angle in degrees, lower is more faithful; with --identity, which
  needs arcface_resnet18.pth in the cache);
- NIQE (no-reference, lower is better; basicsr's calculate_niqe on the Y channel; faces under 192 px enlarged);
- sharpness: the variance of the Laplacian of the grey face (no-reference, higher is sharper);
- PSNR to the official output (fidelity 1), showing how far the control moves the result.

    python bench/fidelity.py --version 1.4 --faces celeba_test/gt --count 100 --identity   # real weights
    python bench/fidelity.py --random                                                      # structure only

--random uses random weights in the v1.4 layout (Flax's initialisers): the table then shows only that the control
is continuous, that 1 is the official output and how far each value moves it, not what a trained model trades.
bench/fidelity_trained.py calls `fidelity_table` on a model it trains.
"""
import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.data.degradations import CELEBA_TEST, degrade
from gfpgan_jax.evaluation.niqe import niqe
from gfpgan_jax.evaluation.pixel import psnr
from gfpgan_jax.files.releases import pretrained_path
from gfpgan_jax.files.weights import load_weights
from gfpgan_jax.inference.restorer import to_model_input, to_uint8
from gfpgan_jax.models.generator import build_model
from gfpgan_jax.models.options import ModelConfig

EXAMPLE_FACES = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned')


def basicsr_niqe_params():
    """basicsr's copy of NIQE's pristine model, if basicsr is installed (the cache may not have the file yet)."""
    spec = importlib.util.find_spec('basicsr')
    path = spec and os.path.join(os.path.dirname(spec.origin), 'metrics', 'niqe_pris_params.npz')
    return path if path and os.path.isfile(path) else None


def read_faces(folder, count, size=512):
    """Up to `count` RGB uint8 faces from `folder`, resized to `size` (cv2 bilinear) where they are not."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(('.png', '.jpg', '.jpeg', '.webp')))[:count]
    faces = []
    for name in names:
        face = cv2.imread(os.path.join(folder, name), cv2.IMREAD_COLOR)
        if face is None:
            sys.exit(f'{folder}/{name}: not a readable image')
        faces.append((cv2.resize(face, (size, size)) if face.shape[:2] != (size, size) else face)[..., ::-1])
    if not faces:
        sys.exit(f'{folder}: no faces in it')
    return np.stack(faces)


def load_model(args):
    if args.random:
        config = ModelConfig()
        x = jnp.zeros((1, 512, 512, 3))
        variables = build_model(config).init({'params': jax.random.key(args.seed), 'noise': jax.random.key(0)}, x)
        return config, variables, 'random weights, v1.4 layout'
    path = args.model_path or pretrained_path(args.version)
    config, variables = load_weights(path)
    return config, variables, os.path.basename(path)


def sharpness(faces):
    return np.array([cv2.Laplacian(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for face in faces])


def niqe_of(faces, params):
    """NIQE of each face; faces under two 96 px blocks wide are first enlarged (bicubic) to 192 px, the same for
    every row, so the rows stay comparable with one another (not with NIQE figures of 512 px faces)."""
    factor = -(-192 // faces.shape[2])
    if factor > 1:
        faces = np.stack([cv2.resize(face, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
                          for face in faces])
    return niqe(faces, params=params)


def measure(faces, gt, reference, niqe_params, identity):
    row = dict(psnr=float(np.mean(psnr(faces, gt))), niqe=float(np.nanmean(niqe_of(faces, niqe_params))),
               sharpness=float(np.mean(sharpness(faces))))
    if reference is not None:
        row['psnr_to_official'] = float(np.mean(np.minimum(np.asarray(psnr(faces, reference)), 99.0)))
    if identity is not None:
        row['identity_deg'] = float(np.mean(identity(faces, gt)))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument('--version', default='1.4', help='official release, from the cache (default 1.4)')
    source.add_argument('--model-path', help='an official .pth or a converted .safetensors')
    source.add_argument('--random', action='store_true', help='random weights: structure only')
    p.add_argument('--faces', default=EXAMPLE_FACES, help='folder of aligned ground-truth faces')
    p.add_argument('--count', type=int, default=100, help='at most this many faces')
    p.add_argument('--draws', type=int, default=1, help='degradations drawn per face (for few faces)')
    p.add_argument('--fidelities', default='0,0.25,0.5,0.75,1')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--seed', type=int, default=0, help='of the degradations (and of --random weights)')
    p.add_argument('--identity', action='store_true', help='also the ArcFace identity distance')
    p.add_argument('--niqe-params', help='niqe_pris_params.npz (default: the cached official file, else basicsr\'s)')
    p.add_argument('--json', help='also write the table here')
    args = p.parse_args(argv)

    config, variables, weights = load_model(args)
    gt = np.repeat(read_faces(args.faces, args.count, config.out_size), args.draws, axis=0)
    identity = None
    if args.identity:
        from gfpgan_jax.evaluation.identity import IdentityDistance
        identity = IdentityDistance.from_pretrained()
    start = time.perf_counter()
    table = fidelity_table(config, variables, gt, [float(v) for v in args.fidelities.split(',')],
                           dataclasses.replace(CELEBA_TEST, out_size=config.out_size), seed=args.seed,
                           batch_size=args.batch_size, niqe_params=args.niqe_params, identity=identity)
    print(f'{len(gt)} faces from {args.faces} ({args.draws} draws each), degraded as CelebA-Test (seed {args.seed}); '
          f'{weights}; {time.perf_counter() - start:.0f} s on {jax.devices()[0].platform}')
    print_table(table)
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(dict(weights=weights, faces=len(gt), seed=args.seed, table=table), file, indent=1)


def fidelity_table(config, variables, gt, fidelities, degradation, *, seed=0, batch_size=4, niqe_params=None,
                   identity=None):
    """Rows of measure() for the degraded input and each fidelity: `gt` uint8 RGB faces of the model's size,
    degraded with `degradation` (each face its own draw from `seed`) and rounded to 8 bits as a photo is."""
    model = build_model(config)
    lq = np.concatenate([np.asarray(to_uint8(degrade(jax.random.fold_in(jax.random.key(seed), start),
                                                     gt[start:start + batch_size], config=degradation)['lq']))
                         for start in range(0, len(gt), batch_size)])
    niqe_params = niqe_params or basicsr_niqe_params()
    forward = jax.jit(lambda v, x, w: to_uint8(model.apply(v, x, noise='fixed', fidelity=w).image))
    official = jax.jit(lambda v, x: to_uint8(model.apply(v, x, noise='fixed').image))

    def restore(fidelity):
        batches = []
        for start in range(0, len(lq), batch_size):
            x = to_model_input(lq[start:start + batch_size])
            batches.append(np.asarray(official(variables, x) if fidelity is None
                                      else forward(variables, x, np.float32(fidelity))))
        return np.concatenate(batches)

    reference = restore(None)
    table = [dict(fidelity='input', **measure(lq, gt, None, niqe_params, identity))]
    for fidelity in fidelities:
        table.append(dict(fidelity=fidelity, **measure(restore(fidelity), gt, reference, niqe_params, identity)))
    return table


def print_table(table):
    columns = ['fidelity', 'psnr'] + (['identity_deg'] if 'identity_deg' in table[-1] else []) + [
        'niqe', 'sharpness', 'psnr_to_official']
    print('| ' + ' | '.join(columns) + ' |\n|' + ' --- |' * len(columns))
    for row in table:
        print('| ' + ' | '.join(_cell(row.get(c)) for c in columns) + ' |')


def _cell(value):
    return '' if value is None else value if isinstance(value, str) else f'{value:.2f}' if value < 1e3 else \
        f'{value:.0f}'


if __name__ == '__main__':
    main()
