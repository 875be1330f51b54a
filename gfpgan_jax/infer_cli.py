"""`infer.py`: restore faces from image files, with the official inference_gfpgan.py's flags and output layout."""
import argparse
import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gfpgan_jax.download import RELEASES, DownloadError
from gfpgan_jax.fileio import atomic_write
from gfpgan_jax.pth import CheckpointError
from gfpgan_jax.restorer import FaceRestorer

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def parse_args(argv):
    p = argparse.ArgumentParser(prog='infer.py', description=__doc__)
    p.add_argument('-i', '--input', default='inputs/whole_imgs', help='an image or a folder of images')
    p.add_argument('-o', '--output', default='results', help='output folder')
    p.add_argument('-v', '--version', default='1.3', choices=sorted(RELEASES), help='official GFPGAN release')
    p.add_argument('--model-path', help='a .pth checkpoint (converted on the fly) or a converted .safetensors; '
                                         'overrides --version')
    p.add_argument('--aligned', action='store_true', help='inputs are aligned faces')
    p.add_argument('--suffix', default=None, help='suffix of the restored faces')
    p.add_argument('--ext', default='auto', help='image extension of whole-image results: auto | jpg | png')
    # Accepted so that official command lines run unchanged; they act only in the whole-image mode.
    p.add_argument('-s', '--upscale', type=int, default=2, help='whole-image mode: final upsampling scale')
    p.add_argument('--bg_upsampler', default='realesrgan', help='whole-image mode: background upsampler')
    p.add_argument('--bg_tile', type=int, default=400, help='whole-image mode: background upsampler tile size')
    p.add_argument('--only_center_face', action='store_true', help='whole-image mode: only the center face')
    p.add_argument('-w', '--weight', type=float, default=0.5,
                   help='accepted for compatibility; the official GFPGAN models ignore it too')
    p.add_argument('--noise', default='random', choices=('random', 'fixed', 'none'),
                   help="decoder noise: 'random' (official default, seeded), 'fixed' (the checkpoint's stored "
                        "noise), 'none'")
    p.add_argument('--seed', type=int, default=0, help='seed of the random noise')
    p.add_argument('--dtype', default='float32', choices=sorted(DTYPES), help='compute precision')
    p.add_argument('--batch-size', type=int, default=8, help='faces restored per compiled call')
    return p.parse_args(argv)


def list_inputs(path):
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        return sorted(f for f in glob.glob(os.path.join(path, '*')) if os.path.isfile(f))
    raise FileNotFoundError(f'{path}: no such file or folder')


def output_stem(path):
    return os.path.splitext(os.path.basename(path))[0] + '_00'


def without_name_clashes(paths):
    """The paths whose outputs would not overwrite an earlier file's (a.jpg and a.png both give a_00.png, which
    the official tool overwrites silently), and the errors of the others."""
    first = {}
    kept, errors = [], []
    for path in paths:
        stem = output_stem(path)
        if stem in first:
            errors.append(ValueError(f'{path}: skipped, its results would overwrite those of {first[stem]}'))
        else:
            first[stem] = path
            kept.append(path)
    return kept, errors


def read_face(path, size):
    """BGR uint8 face resized to size x size (cv2 bilinear, like the official), or a one-line error."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: not a readable image')
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size))
    return image


def write_image(path, image):
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or '.png', image)
    if not ok:
        raise ValueError(f'{path}: cannot encode image')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        f.write(encoded.tobytes())


def save_results(output, name, suffix, cropped, restored):
    stem = output_stem(name)
    face_name = f'{stem}_{suffix}.png' if suffix is not None else f'{stem}.png'
    write_image(os.path.join(output, 'cropped_faces', f'{stem}.png'), cropped)
    write_image(os.path.join(output, 'restored_faces', face_name), restored)
    write_image(os.path.join(output, 'cmp', f'{stem}.png'), np.concatenate([cropped, restored], axis=1))


def _read_all(paths, size):
    """(path, face) for each readable file, and the errors of the others."""
    faces, errors = [], []
    for path in paths:
        try:
            faces.append((path, read_face(path, size)))
        except ValueError as error:
            errors.append(error)
    return faces, errors


def _save_batch(output, suffix, faces, restored):
    """Write one batch's results; returns the number that failed."""
    failures = 0
    restored = np.asarray(restored)[..., ::-1]  # waits for the device; RGB -> BGR
    for (name, cropped), face in zip(faces, restored):
        try:
            save_results(output, name, suffix, cropped, np.ascontiguousarray(face))
        except (OSError, ValueError) as error:
            tqdm.write(f'error: {name}: {error}', file=sys.stderr)
            failures += 1
    return failures


def restore_aligned(restorer, paths, output, suffix, batch_size, io_threads=4):
    """Restore every readable file; returns the number of files that failed.

    Three stages overlap: worker threads decode the next batch and encode the previous one while the device
    restores the current one (dispatch is asynchronous), so the accelerator is not left waiting on PNG codecs.
    """
    size = restorer.config.out_size
    position = {path: i for i, path in enumerate(paths)}
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    failures = 0
    with ThreadPoolExecutor(io_threads) as pool, tqdm(total=len(paths), unit='face', desc='restoring') as bar:
        reading = pool.submit(_read_all, chunks[0], size) if chunks else None
        writing = []
        for index in range(len(chunks)):
            faces, errors = reading.result()
            if index + 1 < len(chunks):
                reading = pool.submit(_read_all, chunks[index + 1], size)
            for error in errors:
                tqdm.write(f'error: {error}', file=sys.stderr)
            failures += len(errors)
            bar.update(len(errors))
            if faces:
                stacked = np.stack([f for _, f in faces])[..., ::-1]  # BGR -> RGB
                # A fixed batch shape keeps to one compiled program; padding rows are dropped after.
                padding = np.zeros((batch_size - len(faces),) + stacked.shape[1:], np.uint8)
                # Faces are numbered by their place in the input list, so that with random noise a face's
                # result does not depend on --batch-size or on unreadable files beside it.
                indices = [position[path] for path, _ in faces]
                indices += indices[-1:] * len(padding)
                restored = restorer.restore_async(np.concatenate([stacked, padding]), indices)[:len(faces)]
                writing.append((pool.submit(_save_batch, output, suffix, faces, restored), len(faces)))
            while writing and (writing[0][0].done() or len(writing) > 2):
                future, count = writing.pop(0)
                failures += future.result()
                bar.update(count)
        for future, count in writing:
            failures += future.result()
            bar.update(count)
    return failures


def main(argv=None):
    args = parse_args(argv)
    if not args.aligned:
        print('error: whole-image restoration (face detection, alignment, paste-back) is not there yet; '
              'pass --aligned with 512x512 aligned faces', file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print('error: --batch-size must be at least 1', file=sys.stderr)
        return 2
    try:
        paths = list_inputs(args.input)
        if not paths:
            raise FileNotFoundError(f'{args.input}: no files in it')
        os.makedirs(args.output, exist_ok=True)
        if not os.access(args.output, os.W_OK):
            raise PermissionError(f'{args.output}: cannot write there')
        options = dict(dtype=DTYPES[args.dtype], noise=args.noise, seed=args.seed)
        if args.model_path:
            restorer = FaceRestorer.from_checkpoint(args.model_path, **options)
        else:
            restorer = FaceRestorer.from_pretrained(args.version, **options)
    except (CheckpointError, DownloadError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:  # missing input, an output path under a file, an unwritable cache, ...
        where = f'{error.filename}: ' if error.filename else ''
        print(f'error: {where}{error.strerror or error}', file=sys.stderr)
        return 2
    unique, clashes = without_name_clashes(paths)
    for error in clashes:
        print(f'error: {error}', file=sys.stderr)
    # No point padding a handful of faces up to a large batch.
    batch_size = min(args.batch_size, len(unique))
    failures = len(clashes) + restore_aligned(restorer, unique, args.output, args.suffix, batch_size)
    print(f'restored {len(paths) - failures} of {len(paths)} faces into {args.output}')
    return 1 if failures else 0
