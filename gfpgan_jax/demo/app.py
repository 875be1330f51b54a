"""The web page: upload photos, restore their faces, compare before and after, download the results.

The restoring itself (`restore_photos`) knows nothing of the page: it reads the uploads as infer.py reads its inputs
(cv2, EXIF orientation applied), restores them with one ImageRestorer per request (faces numbered from 0, so a photo
comes out as `infer.py` writes it with the same settings) and writes PNGs into a folder of the visitor's own.
"""
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import cv2
import gradio as gr
import numpy as np
import PIL.Image

from gfpgan_jax.cli.files import read_photo, write_image
from gfpgan_jax.inference.fidelity import HELP as FIDELITY_HELP
from gfpgan_jax.inference.fidelity import check_fidelity
from gfpgan_jax.inference.pipeline import as_bgr

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples' / 'photos'
DEFAULT_RELEASE = '1.4'  # as the hosted demo
DEFAULT_RESCALE = 2
MAX_RESCALE = 4
MAX_PHOTOS = 20  # per request
MAX_PIXELS = 25_000_000  # per photo: a 25 MP photo at 4x is 400 MP of output
MAX_UPLOAD = '50mb'
logger = logging.getLogger(__name__)


class PhotoResult(NamedTuple):
    name: str
    before: str  # the photo resized to the result's size (JPEG), for the comparison
    after: str  # the restored photo (PNG)
    faces: list  # (side-by-side PNG: input | restored, caption) per face
    downloads: list  # the restored photo and faces (PNG)


class Restoration(NamedTuple):
    photos: list  # PhotoResult per restored photo
    problems: list  # one line per photo that failed or needs a word


def _unique_names(paths):
    """Output names for the uploads: their own, with _2, _3, ... where two share one."""
    seen, names = {}, []
    for path in paths:
        stem = Path(path).stem or 'photo'
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f'{stem}_{seen[stem]}')
    return names


def read_upload(path, max_pixels=MAX_PIXELS):
    """(BGR uint8 photo, damage or None) as infer.py reads it, or a ValueError; photos over `max_pixels` are
    refused from their header, before they are decoded."""
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
    except (OSError, PIL.Image.DecompressionBombError, ValueError):
        width = height = 0  # PIL cannot read it: OpenCV decides below
    if width * height > max_pixels:
        raise ValueError(f'{width}x{height} pixels is more than this page restores ({max_pixels / 1e6:g} megapixels); '
                         f'shrink it first, or use infer.py')
    image, damage = read_photo(str(path))
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ValueError(f'{image.shape[1]}x{image.shape[0]} pixels is more than this page restores')
    return as_bgr(image), damage


def restore_photos(models, paths, folder, *, release=DEFAULT_RELEASE, rescale=DEFAULT_RESCALE, fidelity=None,
                   only_center_face=False, background=True, max_pixels=MAX_PIXELS):
    """Restore the photo files `paths` into `folder`; a Restoration. Bad settings raise a ValueError; a photo that
    cannot be restored is one of its problems, and the others go on."""
    fidelity = check_fidelity(fidelity)
    if isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or rescale != int(rescale) \
            or not 1 <= rescale <= MAX_RESCALE:
        raise ValueError(f'rescale must be a whole number from 1 to {MAX_RESCALE}, got {rescale!r}')
    if len(paths) > MAX_PHOTOS:
        raise ValueError(f'{len(paths)} photos at once is more than this page takes ({MAX_PHOTOS}); '
                         f'send them in groups')
    pipeline = models.pipeline(release, int(rescale), background)
    photos, problems = [], []
    for path, name in zip(paths, _unique_names(paths)):
        label = Path(path).name
        try:
            image, damage = read_upload(path, max_pixels)
            result = pipeline.enhance(image, only_center_face=only_center_face, fidelity=fidelity)
            photos.append(_write(folder, name, image, result))
        except (ValueError, cv2.error, MemoryError) as error:
            problems.append(f'{label}: {" ".join(str(error).split())}')
            continue
        if damage:
            problems.append(f'{label}: {damage}; restored as far as it decodes')
        if not len(result.restored_faces):
            problems.append(f'{label}: no face found; the photo is only upscaled')
    return Restoration(photos, problems)


def _write(folder, name, image, result):
    """Write one photo's results into `folder`; its PhotoResult."""
    after = os.path.join(folder, f'{name}.png')
    write_image(after, result.image)
    before = os.path.join(folder, f'{name}_before.jpg')
    write_image(before, cv2.resize(image, result.image.shape[1::-1], interpolation=cv2.INTER_LANCZOS4))
    faces, downloads = [], [after]
    for index, (cropped, restored) in enumerate(zip(result.cropped_faces, result.restored_faces)):
        side_by_side = os.path.join(folder, f'{name}_{index:02d}_cmp.png')
        write_image(side_by_side, np.concatenate([cropped, restored], axis=1))
        face = os.path.join(folder, f'{name}_{index:02d}.png')
        write_image(face, restored)
        faces.append((side_by_side, f'{name}: face {index + 1}'))
        downloads.append(face)
    return PhotoResult(name, before, after, faces, downloads)


def _fresh_folder(folder):
    """The visitor's folder, emptied of the last request's files (the page holds its own copies), or a new one."""
    if folder and os.path.isdir(folder):
        shutil.rmtree(folder)
    return tempfile.mkdtemp(prefix='gfpgan-jax-demo-')


def _remove_folder(folder):
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def _page_error(error):
    """An error for the page: gr.Error's message is shown, never a traceback (that goes to the server's log)."""
    if isinstance(error, (ValueError, MemoryError)):
        return gr.Error(' '.join(str(error).split()) or 'not enough memory', print_exception=False)
    logger.exception('restoring failed')
    return gr.Error(f'restoring failed ({type(error).__name__}); the server log has the details',
                    print_exception=False)


INTRO = """# Restore old photos with GFPGAN

Drop one or several photos below (or pick an example), press **Restore**, and compare before and after. The faces
are restored by GFPGAN; the rest of the photo is enlarged. Your files stay on this server only while you use the
page."""


def build_demo(models, examples=EXAMPLES, max_pixels=MAX_PIXELS):
    """The gr.Blocks page for `models` (a demo.models.Models). `examples`: a folder of photos offered as examples
    (skipped where it does not exist, as in an installed package)."""
    releases = list(models.restorers)
    default_release = DEFAULT_RELEASE if DEFAULT_RELEASE in releases else releases[-1]

    def restore_uploads(files, release, rescale, fidelity, only_center_face, background, folder):
        paths = [getattr(file, 'name', file) for file in files or []]
        if not paths:
            raise gr.Error('Add a photo first: drop it on the upload box, or click an example.', print_exception=False)
        folder = _fresh_folder(folder)
        try:
            done = restore_photos(models, paths, folder, release=release, rescale=rescale, fidelity=fidelity,
                                  only_center_face=only_center_face, background=background, max_pixels=max_pixels)
        except Exception as error:
            raise _page_error(error) from None
        if not done.photos:
            raise gr.Error(' '.join(done.problems), print_exception=False)
        status = '\n'.join(f'- {line}' for line in done.problems)
        names = [photo.name for photo in done.photos]
        first = done.photos[0]
        return (status, gr.update(choices=names, value=names[0], visible=len(names) > 1), (first.before, first.after),
                [face for photo in done.photos for face in photo.faces],
                [path for photo in done.photos for path in photo.downloads],
                {photo.name: (photo.before, photo.after) for photo in done.photos}, folder)

    def restore_one(image, version, rescale, fidelity, folder):
        if not image:
            raise gr.Error('no image given', print_exception=False)
        image = getattr(image, 'name', image)
        folder = _fresh_folder(folder)
        try:
            done = restore_photos(models, [image], folder, release=version, rescale=rescale, fidelity=fidelity,
                                  max_pixels=max_pixels)
        except Exception as error:
            raise _page_error(error) from None
        if not done.photos:
            raise gr.Error(' '.join(done.problems), print_exception=False)
        return done.photos[0].after, folder

    with gr.Blocks(title='GFPGAN: restore old photos', analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        folder = gr.State(None, delete_callback=_remove_folder)
        comparisons = gr.State({})
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                photos = gr.File(label='Photos', file_count='multiple', file_types=['image'], elem_id='photos')
                release = gr.Radio(releases, value=default_release, label='GFPGAN release',
                                   info='1.4 gives the most detail, 1.3 the most natural faces')
                rescale = gr.Slider(1, MAX_RESCALE, value=DEFAULT_RESCALE, step=1, label='Rescale',
                                    info='the restored photo is this many times larger')
                fidelity = gr.Slider(0, 1, value=1, step=0.05, label='Fidelity', info=FIDELITY_HELP)
                only_center_face = gr.Checkbox(label='Only the face nearest the centre')
                background = gr.Checkbox(value=models.upsampler is not None, interactive=models.upsampler is not None,
                                         label='Enhance the background with Real-ESRGAN',
                                         info=None if models.upsampler else 'needs a GPU: it is resized here')
                button = gr.Button('Restore', variant='primary', elem_id='restore')
            with gr.Column():
                status = gr.Markdown(elem_id='status')
                shown = gr.Dropdown(label='Photo compared', visible=False)
                slider = gr.ImageSlider(label='Before / after', type='filepath', elem_id='before-after')
                faces = gr.Gallery(label='Faces: input | restored', columns=2, elem_id='faces')
                downloads = gr.File(label='Restored photos and faces (PNG)', file_count='multiple',
                                    elem_id='downloads')
        if examples and Path(examples).is_dir():
            gr.Examples([[[str(path)]] for path in sorted(Path(examples).iterdir()) if path.is_file()],
                        inputs=[photos], label='Example photos')
        button.click(restore_uploads, [photos, release, rescale, fidelity, only_center_face, background, folder],
                     [status, shown, slider, faces, downloads, comparisons, folder], api_visibility='private')
        shown.change(lambda name, pairs: pairs.get(name), [shown, comparisons], slider, api_visibility='private')

        # The API endpoint /restore for gradio_client: image, version, rescale, fidelity -> restored image.
        with gr.Row(visible=False):
            # A file, not gr.Image: a file that is not an image then gets this page's message, not a failed PIL decode.
            api_image = gr.File(type='filepath', label='image')
            api_version = gr.Radio(releases, value=default_release, label='version')
            api_rescale = gr.Number(DEFAULT_RESCALE, precision=0, minimum=1, maximum=MAX_RESCALE, label='rescale')
            api_fidelity = gr.Number(1.0, minimum=0, maximum=1, label='fidelity')
            api_output = gr.Image(type='filepath', format='png', label='restored')
            api_button = gr.Button()
        api_button.click(restore_one, [api_image, api_version, api_rescale, api_fidelity, folder],
                         [api_output, folder], api_name='restore')
    return demo
