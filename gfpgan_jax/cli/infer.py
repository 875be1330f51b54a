"""`infer.py`: restore faces from image files, with the official inference_gfpgan.py's flags and output layout."""
import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gfpgan_jax.cli.files import Outputs, encodable, inputs_among_outputs, list_inputs, quiet_opencv, read_photo
from gfpgan_jax.cli.report import Report, say
from gfpgan_jax.cli.usage import ArgumentParser, file_name_part, fraction, whole_number
from gfpgan_jax.cli.video import is_video, restore_videos
from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.files import compile_cache
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import RELEASES, DownloadError, fetch_all, helper_weights_path, missing_downloads
from gfpgan_jax.inference.background import BackgroundUpsampler
from gfpgan_jax.inference.batching import pad_batch
from gfpgan_jax.inference.detection import FaceDetector
from gfpgan_jax.inference.fidelity import HELP as FIDELITY_HELP
from gfpgan_jax.inference.parsing import FaceParser
from gfpgan_jax.inference.pipeline import ImageRestorer
from gfpgan_jax.inference.restorer import FaceRestorer

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# What can fail for one file without stopping the run: bad or odd data, a file gone, a codec's refusal, memory.
PER_FILE_ERRORS = (ValueError, OSError, cv2.error, MemoryError, jax.errors.JaxRuntimeError)
INTERRUPTED = 130  # the shell's status for a run ended by Ctrl-C (128 + SIGINT)


def output_extension(text):
    """--ext: 'auto', or an image format OpenCV can write (a leading dot is dropped)."""
    extension = text.removeprefix('.')
    if extension != 'auto' and not encodable(extension):
        raise argparse.ArgumentTypeError(f'OpenCV cannot write {text!r} images; use auto, png, jpg, webp, bmp or tif')
    return extension


def parse_args(argv):
    p = ArgumentParser(prog='infer.py', description=__doc__)
    p.add_argument('-i', '--input', default='inputs/whole_imgs', help='an image or a folder of images')
    p.add_argument('-o', '--output', default='results', help='output folder')
    p.add_argument('-v', '--version', default='1.3', choices=sorted(RELEASES), help='official GFPGAN release')
    p.add_argument('--model-path', help='a .pth checkpoint (converted on the fly) or a converted .safetensors; '
                                         'overrides --version')
    p.add_argument('--aligned', action='store_true', help='inputs are aligned faces (default: whole photos)')
    p.add_argument('--suffix', type=file_name_part, default=None, help='suffix of the restored faces and photos')
    p.add_argument('--ext', type=output_extension, default='auto',
                   help='image format of the restored photos: auto (as the input; PNG where OpenCV cannot write '
                        "the input's format) or one OpenCV writes: jpg, png, webp, ...")
    p.add_argument('-s', '--upscale', type=whole_number(1), default=2, help='upsampling scale of the restored photos')
    p.add_argument('--bg_upsampler', default='realesrgan',
                   help='background upsampler: realesrgan (on a GPU/TPU, as the official) or anything else for none')
    p.add_argument('--bg_tile', type=whole_number(0), default=400,
                   help='tile size of the background upsampler, 0 for none')
    p.add_argument('--only_center_face', action='store_true', help='restore only the face nearest the centre')
    p.add_argument('-w', '--weight', type=float, default=0.5,
                   help='accepted for compatibility; the official GFPGAN models ignore it too (see --fidelity)')
    p.add_argument('--fidelity', type=fraction, default=1.0, help=FIDELITY_HELP)
    p.add_argument('--noise', default='random', choices=('random', 'fixed', 'none'),
                   help="decoder noise: 'random' (official default, seeded), 'fixed' (the checkpoint's stored "
                        "noise), 'none'")
    p.add_argument('--seed', type=whole_number(-2 ** 63, 2 ** 63 - 1), default=0, help='seed of the random noise')
    p.add_argument('--dtype', default='float32', choices=sorted(DTYPES), help='compute precision')
    p.add_argument('--batch-size', type=whole_number(1), default=8, help='faces restored per compiled call')
    p.add_argument('--no-compile-cache', action='store_true',
                   help=f'do not keep compiled programs for the next run (also: {compile_cache.ENVIRONMENT_VARIABLE}'
                        '=off)')
    return p.parse_args(argv)


def without_name_clashes(paths, report):
    """The paths whose outputs would not overwrite an earlier file's (a.jpg and a.png both give a_00.png, which
    the official tool overwrites silently); the others are reported."""
    first = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name in first:
            report.error(f'{path}: skipped, its results would overwrite those of {first[name]}')
        else:
            first[name] = path
    return list(first.values())


def read_face(path, size):
    """(BGR uint8 face resized to size x size (cv2 bilinear, like the official), damage or None)."""
    image, damage = read_photo(path)
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size))
    return image, damage


def _read_faces(paths, size):
    """(path, face, damage) for each readable file, and (path, error) for the others."""
    faces, errors = [], []
    for path in paths:
        try:
            faces.append((path, *read_face(path, size)))
        except PER_FILE_ERRORS as error:
            errors.append((path, _one_line(error)))
    return faces, errors


def _write_faces(outputs, faces, restored):
    """Write one batch's results: (path, the error or None, damage) per face."""
    written = []
    restored = np.asarray(restored)[..., ::-1]  # waits for the device; RGB -> BGR
    for (path, cropped, damage), face in zip(faces, restored):
        try:
            outputs.write(path, [cropped], [np.ascontiguousarray(face)])
            written.append((path, None, damage))
        except ValueError as error:
            written.append((path, error, damage))
    return written


def _count_faces(future, report, bar):
    written = future.result()
    for path, error, damage in written:
        if error is None:
            report.restored_one(damaged=damage is not None)
        else:
            report.error(f'{path}: {error}')
    bar.update(len(written))


def restore_aligned(restorer, paths, outputs, report, batch_size, fidelity=None, io_threads=4):
    """Restore every readable face file, counting each in `report`.

    Three stages overlap: worker threads decode the next batch and encode the previous one while the device
    restores the current one (dispatch is asynchronous), so the accelerator is not left waiting on PNG codecs.
    Ctrl-C drops the batch being read or restored and lets the ones being written finish: every file appears whole.
    """
    size = restorer.config.out_size
    position = {path: i for i, path in enumerate(paths)}
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(io_threads) as pool, tqdm(total=len(paths), unit='face', desc='restoring') as bar:
        reading = pool.submit(_read_faces, chunks[0], size)
        writing = []
        try:
            for index in range(len(chunks)):
                faces, errors = reading.result()
                if index + 1 < len(chunks):
                    reading = pool.submit(_read_faces, chunks[index + 1], size)
                for path, error in errors:
                    report.error(f'{path}: {error}')
                bar.update(len(errors))
                for path, _, damage in faces:
                    if damage:
                        say(f'warning: {path}: {damage}')
                if faces:
                    stacked = np.stack([face for _, face, _ in faces])[..., ::-1]  # BGR -> RGB
                    # A fixed batch shape keeps to one compiled program; padding rows are dropped after. Faces are
                    # numbered by their place in the input list, so that with random noise a face's result does not
                    # depend on --batch-size or on unreadable files beside it.
                    indices = np.array([position[path] for path, _, _ in faces])
                    restored = restorer.restore_async(pad_batch(stacked, batch_size), pad_batch(indices, batch_size),
                                                      fidelity)[:len(faces)]
                    writing.append(pool.submit(_write_faces, outputs, faces, restored))
                while writing and (writing[0].done() or len(writing) > 2):
                    _count_faces(writing.pop(0), report, bar)
        finally:
            reading.cancel()
            for future in writing:
                _count_faces(future, report, bar)


def restore_whole_images(pipeline, paths, outputs, report, only_center_face, fidelity=None):
    """Restore every readable photo, counting each in `report`. The next photo is decoded and the last one's
    results written on worker threads while this one is restored; Ctrl-C drops the photo being restored and lets
    the one being written finish, so that every file appears whole."""
    with ThreadPoolExecutor(2) as pool, tqdm(total=len(paths), unit='photo', desc='restoring') as bar:
        upcoming = pool.submit(read_photo, paths[0])
        writing = None
        try:
            for index, path in enumerate(paths):
                reading = upcoming
                if index + 1 < len(paths):
                    upcoming = pool.submit(read_photo, paths[index + 1])
                try:
                    image, damage = reading.result()
                    if damage:
                        say(f'warning: {path}: {damage}')
                    result = pipeline.enhance(image, only_center_face=only_center_face, fidelity=fidelity)
                except PER_FILE_ERRORS as error:
                    report.error(f'{path}: {_one_line(error)}')
                    bar.update(1)
                    continue
                if not len(result.restored_faces):
                    say(f'note: {path}: no face found; the photo is written upscaled as it is')
                _finish(writing, report, bar)
                writing = (pool.submit(outputs.write, path, result.cropped_faces, result.restored_faces,
                                       result.image), path, len(result.restored_faces), damage is not None)
        finally:
            upcoming.cancel()
            _finish(writing, report, bar)


def _one_line(error):
    if isinstance(error, cv2.error):
        return f'OpenCV failed on it ({error.err})'
    if isinstance(error, MemoryError):
        return 'not enough memory to restore it'
    return ' '.join(str(error).split())


def _finish(writing, report, bar):
    """Wait for a photo's results to be written, and count it."""
    if writing is None:
        return
    future, path, faces, damaged = writing
    bar.update(1)
    try:
        note = future.result()
    except ValueError as error:
        report.error(f'{path}: {error}')
        return
    if note:
        say(f'note: {path}: {note}')
    report.restored_one(faces, damaged)


def _wants_upsampler(args):
    # The official skips Real-ESRGAN on the CPU, where it is slow.
    return not args.aligned and args.bg_upsampler == 'realesrgan' and jax.default_backend() != 'cpu'


def _load_helper(cls, **kwargs):
    """A helper network from its official file in the cache; a file that does not fit it is named."""
    try:
        return cls.from_pretrained(**kwargs)
    except ConversionError as error:
        raise CheckpointError(helper_weights_path(cls.RELEASE), str(error)) from None


def load_pipeline(args, restorer):
    """The whole-image pipeline as the official tool sets it up: RetinaFace ResNet50, ParseNet masks, and
    Real-ESRGAN x2 for the background on an accelerator (the official skips it on the CPU, where it is slow)."""
    upsampler = None
    if _wants_upsampler(args):  # bf16 where the official uses fp16
        upsampler = _load_helper(BackgroundUpsampler, tile=args.bg_tile, tile_pad=10, pre_pad=0, dtype=jnp.bfloat16)
    elif args.bg_upsampler == 'realesrgan':
        say('note: no Real-ESRGAN background upsampling on the CPU, as in the official tool; the background is '
            'resized')
    return ImageRestorer(restorer, _load_helper(FaceDetector), _load_helper(FaceParser), upsampler,
                         upscale=args.upscale, batch_size=args.batch_size)


def check_paths(args, inputs, outputs):
    """Usage errors of the input and output paths, before any work: an OSError or a ValueError."""
    if not inputs.files and not inputs.broken_links:
        searched = ' (subfolders are not searched)' if inputs.skipped else ''
        raise FileNotFoundError(f'{args.input}: no files in it{searched}')
    overwritten = inputs_among_outputs(inputs.files, outputs.folders(photos=not args.aligned))
    if overwritten:
        more = f' (and {len(overwritten) - 1} more)' if len(overwritten) > 1 else ''
        raise ValueError(f'{overwritten[0]}{more}: an input in {os.path.dirname(overwritten[0])}, where this run '
                         f'writes its results; choose another --output')
    os.makedirs(args.output, exist_ok=True)
    if not os.access(args.output, os.W_OK):
        raise PermissionError(f'{args.output}: cannot write there')
    for folder in outputs.folders(photos=not args.aligned):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(f'{folder}: not a folder, and the results go there')


def prepare(args, inputs, outputs):
    """Everything before the first file: the checks, the compilation cache, the weights (every missing file
    fetched at once) and the networks. Returns the restorer and the pipeline (None with --aligned)."""
    check_paths(args, inputs, outputs)
    helpers = [] if args.aligned else [FaceDetector.RELEASE, FaceParser.RELEASE]
    helpers += [BackgroundUpsampler.RELEASE] if _wants_upsampler(args) else []
    fetch_all(missing_downloads([] if args.model_path else [args.version], helpers))
    if not args.no_compile_cache:  # after the downloads: offline, no cache folder is left behind
        try:
            compile_cache.enable()
        except OSError as error:
            say(f'note: compiled programs are not kept for the next run: cannot make {error.filename}: '
                f'{error.strerror}')
    options = dict(dtype=DTYPES[args.dtype], noise=args.noise, seed=args.seed)
    if args.model_path:
        restorer = FaceRestorer.from_checkpoint(args.model_path, **options)
    else:
        restorer = FaceRestorer.from_pretrained(args.version, **options)
    return restorer, None if args.aligned else load_pipeline(args, restorer)


def main(argv=None):
    try:
        args = parse_args(argv)
    except SystemExit as exit:  # a usage error (2) or --help (0), already printed
        return exit.code
    try:
        inputs = list_inputs(args.input)
        outputs = Outputs(args.output, args.suffix, args.ext)
        restorer, pipeline = prepare(args, inputs, outputs)
    except (CheckpointError, DownloadError, ConversionError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:  # missing input, an output path under a file, an unwritable cache, ...
        where = f'{error.filename}: ' if error.filename else ''
        print(f'error: {where}{error.strerror or error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted before any file was restored', file=sys.stderr)
        return INTERRUPTED

    report = Report('face' if args.aligned else 'photo', len(inputs.files) + len(inputs.broken_links))
    for path in inputs.broken_links:
        report.error(f'{path}: a broken link (what it points to does not exist)')
    for path, kind in inputs.skipped:
        report.skip(kind, f'{path}: a {kind}, skipped' + (' (subfolders are not searched)' if kind == 'folder' else ''))
    report.skipped += ['hidden file'] * inputs.hidden
    paths = without_name_clashes(inputs.files, report)
    videos = [] if args.aligned else [path for path in paths if is_video(path)]
    paths = [path for path in paths if path not in set(videos)]
    if not args.aligned:
        for path in paths:
            outputs.photo(path)  # asks OpenCV which formats it writes here, not in the writer threads
    outputs.note_earlier_faces()
    interrupted = False
    try:
        with quiet_opencv():
            if paths and args.aligned:
                # No point padding a handful of faces up to a large batch.
                restore_aligned(restorer, paths, outputs, report, min(args.batch_size, len(paths)), args.fidelity)
            elif paths:
                restore_whole_images(pipeline, paths, outputs, report, args.only_center_face, args.fidelity)
            if videos:
                restore_videos(pipeline, videos, args.output, report, suffix=args.suffix,
                               only_center_face=args.only_center_face, fidelity=args.fidelity)
    except KeyboardInterrupt:
        interrupted = True
    print(('interrupted: ' if interrupted else '') + report.last_line(args.output, interrupted))
    return report.exit_code(interrupted)
