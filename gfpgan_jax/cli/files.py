"""The files of an infer.py run: what an input folder holds, reading a photo and noticing one cut short, where its
results go (named as the official tool names them) and writing them."""
import contextlib
import functools
import mmap
import os
import re
from typing import NamedTuple

import cv2
import numpy as np

from gfpgan_jax.files.atomic import atomic_write

PHOTO_FOLDER = 'restored_imgs'
FACE_FOLDERS = ('cropped_faces', 'restored_faces', 'cmp')
# What an input is written as when OpenCV cannot write its own format (no extension, .jfif, ...).
FALLBACK_EXTENSION = 'png'


class Inputs(NamedTuple):
    files: list  # the regular files to restore, in the order of their paths
    broken_links: list  # links to nothing
    skipped: list  # (path, 'folder' or 'special file'): not restored
    hidden: int  # names starting with a dot, ignored as the official tool's glob ignores them


def list_inputs(path):
    """The `Inputs` of `path`, an image file or a folder of them (its subfolders are not searched)."""
    if os.path.isfile(path):
        return Inputs([path], [], [], 0)
    if not os.path.isdir(path):
        raise FileNotFoundError(f'{path}: no such file or folder')
    files, broken_links, skipped, hidden = [], [], [], 0
    for name in sorted(os.listdir(path)):
        entry = os.path.join(path, name)
        if name.startswith('.'):
            hidden += 1
        elif os.path.isfile(entry):
            files.append(entry)
        elif os.path.isdir(entry):
            skipped.append((entry, 'folder'))
        elif os.path.islink(entry):
            broken_links.append(entry)
        else:  # reading a pipe or a device could block or never end
            skipped.append((entry, 'special file'))
    return Inputs(files, broken_links, skipped, hidden)


def read_photo(path):
    """(BGR uint8 image as cv2.imread gives it, what is missing from the file or None), or a ValueError saying why
    not. A JPEG cut short still decodes, grey below where its data ends: it comes back with the damage named."""
    try:
        damage = truncation(path)
    except OSError as error:
        raise ValueError(f'cannot read it: {error.strerror}') from None
    try:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders raise where most return nothing
        image = None
    if image is None:
        raise ValueError(damage or ('is empty' if os.path.getsize(path) == 0 else 'not a readable image'))
    return image, damage


def truncation(path):
    """What a JPEG or PNG file cut short (a partial download or copy) lacks at its end, or None for a whole one or
    another format."""
    with open(path, 'rb') as file:
        if os.fstat(file.fileno()).st_size < 8:
            return None
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:2] == b'\xff\xd8' and not _jpeg_ends(data):
                return 'its JPEG data ends early (no end-of-image marker): the part below is missing'
            if data[:8] == b'\x89PNG\r\n\x1a\n' and data.find(b'IEND') == -1:
                return 'its PNG data ends early (no IEND chunk)'
    return None


def _jpeg_ends(data):
    """Whether a JPEG's image data is followed by its end-of-image marker (FF D9). The header segments are skipped
    by their lengths, since an EXIF thumbnail in them has an end marker of its own; in the coded data after the start
    of scan, an FF byte is always a marker or stuffed, so the first FF D9 there ends the image."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False  # not a marker where one must be: damaged
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan
            return data.find(b'\xff\xd9', position) != -1
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], 'big')
    return False


@functools.cache
def encodable(extension):
    """Whether OpenCV can write a BGR image as `extension` (png, jpg, ...): it has an encoder for the name, and that
    encoder takes three channels (.pgm's does not)."""
    if not extension or not cv2.haveImageWriter(f'x.{extension}'):
        return False
    with quiet_opencv():
        try:
            return cv2.imencode(f'.{extension}', np.zeros((8, 8, 3), np.uint8))[0]
        except cv2.error:
            return False


@contextlib.contextmanager
def quiet_opencv():
    """OpenCV's own log off: its messages on a file it cannot read or write (a failed trial encoding among them)
    repeat, without the file's name, what the run says on one line."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def write_image(path, image):
    """Encode `image` by `path`'s extension and write it atomically; a ValueError naming `path` if that fails."""
    extension = os.path.splitext(path)[1]
    try:
        ok, encoded = cv2.imencode(extension, image)
    except cv2.error as error:
        raise ValueError(f'cannot write {path}: OpenCV cannot encode it as {extension} ({error.err})') from None
    if not ok:
        raise ValueError(f'cannot write {path}: OpenCV cannot encode it as {extension}')
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path) as temp, open(temp, 'wb') as file:
            file.write(encoded)
    except OSError as error:
        raise ValueError(f'cannot write {path}: {error.strerror or error}') from None


class Outputs:
    """Where a run puts each input's results, named as the official tool names them: the restored photo
    restored_imgs/{name}[_{suffix}].{ext}, and for its face i cropped_faces/{name}_{i:02d}.png,
    restored_faces/{name}_{i:02d}[_{suffix}].png and cmp/{name}_{i:02d}.png.

    ext: 'auto' keeps the input's format, written as PNG where OpenCV cannot write that; else an encodable
    extension. Face files of an earlier run that this run's results do not replace are removed with them (see
    `write`), so that a photo found with fewer faces than before does not keep the old ones beside its new ones.
    """

    def __init__(self, folder, suffix=None, ext='auto'):
        self.folder = folder
        self.ext = ext
        self._suffix = '' if suffix is None else f'_{suffix}'
        self._earlier = None

    def photo(self, path):
        """The restored photo's path, and a note when it is not written in the input's own format."""
        name, extension = os.path.splitext(os.path.basename(path))
        extension = extension[1:] if self.ext == 'auto' else self.ext
        note = None
        if not encodable(extension):
            what = f'.{extension} files' if extension else 'files without an extension'
            note = f'OpenCV cannot write {what}: the restored photo is written as {FALLBACK_EXTENSION.upper()}'
            extension = FALLBACK_EXTENSION
        return os.path.join(self.folder, PHOTO_FOLDER, f'{name}{self._suffix}.{extension}'), note

    def face(self, folder, path, index):
        """The path of `path`'s face `index` in `folder`, one of FACE_FOLDERS."""
        name = os.path.splitext(os.path.basename(path))[0]
        suffix = self._suffix if folder == 'restored_faces' else ''
        return os.path.join(self.folder, folder, f'{name}_{index:02d}{suffix}.png')

    def folders(self, photos=True):
        """The folders this run writes into."""
        return [os.path.join(self.folder, name) for name in ((PHOTO_FOLDER,) if photos else ()) + FACE_FOLDERS]

    def note_earlier_faces(self):
        """Remember the face files already in the output folders; call before the run writes any."""
        self._earlier = {}
        for folder in FACE_FOLDERS:
            suffix = self._suffix if folder == 'restored_faces' else ''
            pattern = re.compile(r'(.+)_(\d{2,})' + re.escape(suffix) + r'\.png')
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for file in os.listdir(os.path.join(self.folder, folder)):
                    match = pattern.fullmatch(file)
                    # Only the names this tool writes: a_00.png, a_123.png, not a_000.png.
                    if match and not file.startswith('.') and match[2] == f'{int(match[2]):02d}':
                        self._earlier.setdefault(match[1], []).append((int(match[2]),
                                                                       os.path.join(self.folder, folder, file)))

    def write(self, path, cropped_faces, restored_faces, photo=None):
        """Write `path`'s results (BGR uint8 faces, and the restored photo unless None), the photo first: it is the
        one a format may refuse (too large for WebP or JPEG, say), and then no face file is left without it. Then
        remove the face files of `path` that an earlier run numbered beyond these faces. Returns the note of
        `photo`, if any."""
        note = None
        if photo is not None:
            destination, note = self.photo(path)
            write_image(destination, photo)
        for index, (cropped, restored) in enumerate(zip(cropped_faces, restored_faces)):
            write_image(self.face('cropped_faces', path, index), cropped)
            write_image(self.face('restored_faces', path, index), restored)
            write_image(self.face('cmp', path, index), np.concatenate([cropped, restored], axis=1))
        name = os.path.splitext(os.path.basename(path))[0]
        for index, stale in (self._earlier or {}).get(name, ()):
            if index >= len(restored_faces):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(stale)
        return note


def inputs_among_outputs(files, folders):
    """The input files that lie in one of `folders` (real paths compared, links followed), where a run would write
    over them."""
    folders = {os.path.realpath(folder) for folder in folders}
    return [file for file in files if os.path.dirname(os.path.realpath(file)) in folders]
