"""`infer.py`: restore faces from image files, with the official inference_gfpgan.py's flags and output layout."""
import argparse
import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import RELEASES, DownloadError
from gfpgan_jax.inference.background import BackgroundUpsampler
from gfpgan_jax.inference.batching import pad_batch
from gfpgan_jax.inference.detection import FaceDetector
from gfpgan_jax.inference.parsing import FaceParser
from gfpgan_jax.inference.pipeline import ImageRestorer
from gfpgan_jax.inference.restorer import FaceRestorer

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def parse_args(argv):
    p = argparse.ArgumentParser(prog='infer.py', description=__doc__)
    p.add_argument('-i', '--input', default='inputs/whole_imgs', help='an image or a folder of images')
    p.add_argument('-o', '--output', default='results', help='output folder')
    p.add_argument('-v', '--version', default='1.3', choices=sorted(RELEASES), help='official GFPGAN release')
    p.add_argument('--model-path', help='a .pth checkpoint (converted on the fly) or a converted .safetensors; '
                                         'overrides --version')
    p.add_argument('--aligned', action='store_true', help='inputs are aligned faces (default: whole photos)')
    p.add_argument('--suffix', default=None, help='suffix of the restored faces and photos')
    p.add_argument('--ext', default='auto', help='image extension of the restored photos: auto (as the input) | '
                                                  'jpg | png')
    p.add_argument('-s', '--upscale', type=int, default=2, help='upsampling scale of the restored photos')
    p.add_argument('--bg_upsampler', default='realesrgan',
                   help='background upsampler: realesrgan (on a GPU/TPU, as the official) or anything else for none')
    p.add_argument('--bg_tile', type=int, default=400, help='tile size of the background upsampler, 0 for none')
    p.add_argument('--only_center_face', action='store_true', help='restore only the face nearest the centre')
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
    image = read_image(path)
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


def save_face(output, stem, suffix, cropped, restored):
    """A face's crop, its restoration and the two side by side, named as the official tool names them."""
    face_name = f'{stem}_{suffix}.png' if suffix is not None else f'{stem}.png'
    write_image(os.path.join(output, 'cropped_faces', f'{stem}.png'), cropped)
    write_image(os.path.join(output, 'restored_faces', face_name), restored)
    write_image(os.path.join(output, 'cmp', f'{stem}.png'), np.concatenate([cropped, restored], axis=1))


def save_whole_image(output, path, suffix, ext, result):
    basename, extension = os.path.splitext(os.path.basename(path))
    for index, (cropped, restored) in enumerate(zip(result.cropped_faces, result.restored_faces)):
        save_face(output, f'{basename}_{index:02d}', suffix, cropped, restored)
    extension = extension[1:] if ext == 'auto' else ext
    name = f'{basename}_{suffix}.{extension}' if suffix is not None else f'{basename}.{extension}'
    write_image(os.path.join(output, 'restored_imgs', name), result.image)


def read_image(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: not a readable image')
    return image


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
            save_face(output, output_stem(name), suffix, cropped, np.ascontiguousarray(face))
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
                # A fixed batch shape keeps to one compiled program; padding rows are dropped after. Faces are
                # numbered by their place in the input list, so that with random noise a face's result does not
                # depend on --batch-size or on unreadable files beside it.
                indices = np.array([position[path] for path, _ in faces])
                restored = restorer.restore_async(pad_batch(stacked, batch_size),
                                                  pad_batch(indices, batch_size))[:len(faces)]
                writing.append((pool.submit(_save_batch, output, suffix, faces, restored), len(faces)))
            while writing and (writing[0][0].done() or len(writing) > 2):
                future, count = writing.pop(0)
                failures += future.result()
                bar.update(count)
        for future, count in writing:
            failures += future.result()
            bar.update(count)
    return failures


def restore_whole_images(pipeline, paths, output, suffix, ext, only_center_face):
    """Restore every readable photo; returns the number of files that failed. The next photo is decoded and the
    last one's results encoded on worker threads while this one is restored."""
    failures = 0
    with ThreadPoolExecutor(2) as pool, tqdm(total=len(paths), unit='image', desc='restoring') as bar:
        upcoming = pool.submit(read_image, paths[0])
        writing = None
        for index, path in enumerate(paths):
            reading = upcoming
            if index + 1 < len(paths):
                upcoming = pool.submit(read_image, paths[index + 1])
            try:
                image = reading.result()  # its errors name the file
                try:
                    result = pipeline.enhance(image, only_center_face=only_center_face)
                except ValueError as error:
                    raise ValueError(f'{path}: {error}') from None
            except ValueError as error:
                tqdm.write(f'error: {error}', file=sys.stderr)
                failures += 1
                bar.update(1)
                continue
            failures += _finish(writing, bar)
            writing = pool.submit(save_whole_image, output, path, suffix, ext, result), path
        failures += _finish(writing, bar)
    return failures


def _finish(writing, bar):
    """Wait for a photo's results to be written; 1 if that failed."""
    if writing is None:
        return 0
    future, path = writing
    bar.update(1)
    try:
        future.result()
    except (OSError, ValueError) as error:
        tqdm.write(f'error: {path}: {error}', file=sys.stderr)
        return 1
    return 0


def load_pipeline(args, restorer):
    """The whole-image pipeline as the official tool sets it up: RetinaFace ResNet50, ParseNet masks, and
    Real-ESRGAN x2 for the background on an accelerator (the official skips it on the CPU, where it is slow)."""
    detector = FaceDetector.from_pretrained()
    parser = FaceParser.from_pretrained()
    upsampler = None
    if args.bg_upsampler == 'realesrgan':
        if jax.default_backend() == 'cpu':
            print('note: no Real-ESRGAN background upsampling on the CPU, as in the official tool; the background '
                  'is resized', file=sys.stderr)
        else:  # bf16 where the official uses fp16
            upsampler = BackgroundUpsampler.from_pretrained(tile=args.bg_tile, tile_pad=10, pre_pad=0,
                                                            dtype=jnp.bfloat16)
    return ImageRestorer(restorer, detector, parser, upsampler, upscale=args.upscale, batch_size=args.batch_size)


def main(argv=None):
    args = parse_args(argv)
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
        pipeline = None if args.aligned else load_pipeline(args, restorer)
    except (CheckpointError, DownloadError, ConversionError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:  # missing input, an output path under a file, an unwritable cache, ...
        where = f'{error.filename}: ' if error.filename else ''
        print(f'error: {where}{error.strerror or error}', file=sys.stderr)
        return 2
    unique, clashes = without_name_clashes(paths)
    for error in clashes:
        print(f'error: {error}', file=sys.stderr)
    if args.aligned:
        # No point padding a handful of faces up to a large batch.
        batch_size = min(args.batch_size, len(unique))
        failures = len(clashes) + restore_aligned(restorer, unique, args.output, args.suffix, batch_size)
        what = 'faces'
    else:
        failures = len(clashes) + restore_whole_images(pipeline, unique, args.output, args.suffix, args.ext,
                                                       args.only_center_face)
        what = 'images'
    print(f'restored {len(paths) - failures} of {len(paths)} {what} into {args.output}')
    return 1 if failures else 0
