"""Build a CelebA-Test-style synthetic set from a folder of high-quality faces, with the paper's degradation.

    python -m gfpgan_jax.evaluation.synthesize --input celeba_hq_test/ --output celeba_test/ --seed 0

Each face is resized to 512x512 (cv2 INTER_AREA when shrinking, INTER_CUBIC when enlarging) and written to
`OUTPUT/gt/`, its degraded copy to `OUTPUT/lq/` (both PNG, named after the input), and the drawn degradation of every
face to `OUTPUT/degradations.json`. The degradation is gfpgan_jax.data.degradations with its CELEBA_TEST settings
(the paper's: Gaussian blur sigma 0.2-10, downsampling 1-8x, Gaussian noise 0-15 levels, JPEG quality 60-100; no
colour changes). Face number i draws its degradation from fold_in(key(seed), i), i counting the readable inputs in
name order, so the set does not depend on --batch-size. Unreadable inputs are reported on one line each (exit 1);
usage errors exit with 2.
"""
import argparse
import dataclasses
import json
import os
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gfpgan_jax.data.degradations import CELEBA_TEST, apply_degradations, sample_params
from gfpgan_jax.evaluation.folders import list_images, read_rgb
from gfpgan_jax.files.atomic import atomic_write

# The parameters that describe a face's CelebA-Test degradation, as written to degradations.json.
RECORDED = ('sigma_x', 'sigma_y', 'theta', 'scale', 'noise_sigma', 'jpeg_quality')


def resize_face(image, size):
    """`image` (h, w, 3) as size x size: anti-aliased when shrinking, bicubic when enlarging."""
    if image.shape[:2] == (size, size):
        return image
    shrinking = min(image.shape[:2]) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def degradation_params(seed, indices, config):
    """Every face's DegradationParams drawn from its own key, fold_in(key(seed), index), stacked into a batch."""
    key = jax.random.key(seed)
    rows = [sample_params(jax.random.fold_in(key, index), 1, config) for index in indices]
    return jax.tree.map(lambda *row: jnp.concatenate(row), *rows)


def degrade_faces(gt, seed, indices, config=CELEBA_TEST):
    """uint8 RGB faces (b, s, s, 3) -> (uint8 degraded faces, their DegradationParams), face i degraded with
    the key of `indices[i]`."""
    params = degradation_params(seed, indices, config)
    lq = apply_degradations(params, jnp.asarray(gt), config)['lq']
    mean, std = np.float32(config.mean), np.float32(config.std)
    # The degradation ends on whole 8-bit levels; undo the normalisation and round off its float error.
    levels = np.round((np.asarray(lq) * std + mean) * 255)
    return np.clip(levels, 0, 255).astype(np.uint8), params


def write_png(path, rgb):
    ok, encoded = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError(f'{path}: cannot encode image')
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        f.write(encoded.tobytes())


def synthesize(input_dir, output_dir, seed=0, batch_size=8, size=512, report=None):
    """Writes OUTPUT/gt, OUTPUT/lq and OUTPUT/degradations.json; returns the number of inputs that failed."""
    report = report or (lambda line: tqdm.write(line, file=sys.stderr))
    config = dataclasses.replace(CELEBA_TEST, out_size=size)
    paths, clashes = list_images(input_dir)
    for line in clashes:
        report(line)
    failures = len(clashes)
    for folder in ('gt', 'lq'):
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    recorded, index = {}, 0
    names = sorted(paths)
    with tqdm(total=len(names), unit='face', desc='degrading') as bar:
        for start in range(0, len(names), batch_size):
            faces, stems = [], []
            for stem in names[start:start + batch_size]:
                try:
                    faces.append(resize_face(read_rgb(paths[stem]), size))
                    stems.append(stem)
                except ValueError as error:
                    report(str(error))
                    failures += 1
            bar.update(len(names[start:start + batch_size]))
            if not faces:
                continue
            indices = list(range(index, index + len(faces)))
            index += len(faces)
            lq, params = degrade_faces(np.stack(faces), seed, indices, config)
            for row, (stem, face, degraded) in enumerate(zip(stems, faces, lq)):
                write_png(os.path.join(output_dir, 'gt', f'{stem}.png'), face)
                write_png(os.path.join(output_dir, 'lq', f'{stem}.png'), degraded)
                recorded[f'{stem}.png'] = {name: float(getattr(params, name)[row]) for name in RECORDED}
    with atomic_write(os.path.join(output_dir, 'degradations.json')) as tmp, open(tmp, 'w') as f:
        json.dump({'seed': seed, 'config': dataclasses.asdict(config), 'faces': recorded}, f, indent=1)
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m gfpgan_jax.evaluation.synthesize', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--input', required=True, help='folder of high-quality faces')
    p.add_argument('--output', required=True, help='folder for gt/, lq/ and degradations.json')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--batch-size', type=int, default=8, help='faces degraded per compiled call')
    p.add_argument('--size', type=int, default=512, help='face size (the paper: 512)')
    args = p.parse_args(argv)
    if not os.path.isdir(args.input):
        print(f'error: --input {args.input}: not a folder', file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print('error: --batch-size must be at least 1', file=sys.stderr)
        return 2
    try:
        failures = synthesize(args.input, args.output, args.seed, args.batch_size, args.size)
    except ValueError as error:  # a --size the degradation cannot take
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:
        where = f'{error.filename}: ' if error.filename else ''
        print(f'error: {where}{error.strerror or error}', file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
