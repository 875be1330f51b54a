"""Ground-truth training faces by number: a folder of images, the official LMDB layout, or tensorflow-datasets.

Every source gives uint8 RGB faces (size, size, 3) at the model's size. Faces of another size are resized to it
(cv2.INTER_AREA when both sides shrink, cv2.INTER_LINEAR otherwise; a non-square image is stretched, as aligned
faces are square); the official reads FFHQ at 512 as it is stored. A face that cannot be read is reported once, with
an UnreadableImageWarning naming it, and the next readable one is given in its place, so a damaged file never stops
training and every batch stays full.

>>> faces = open_faces('datasets/ffhq_512', 512)          # or 'ffhq_512.lmdb', or 'tfds:NAME' (needs the tfds extra)
>>> index, face = faces.read(7)                            # the number read (7, unless 7 is unreadable) and the face
"""
import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')


class UnreadableImageWarning(UserWarning):
    """A training face that cannot be read or decoded; it is skipped."""


def resize_face(image, size):
    """`image` (h, w, c) as a size x size image: INTER_AREA when both sides shrink (it averages, so fine detail does
    not alias), INTER_LINEAR otherwise."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    shrinks = height >= size and width >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


def decode_face(encoded, size):
    """uint8 RGB (size, size, 3) from an encoded image (PNG, JPEG, WebP, BMP; grey and alpha become RGB), or a
    ValueError."""
    buffer = np.frombuffer(encoded, np.uint8)
    # cv2.imdecode fails on an empty buffer rather than returning None.
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ValueError('not a readable image')
    return np.ascontiguousarray(resize_face(image, size)[..., ::-1])


class FaceSource:
    """Random access to faces: `len(source)`, `source[i]` (a face) and `source.read(i)` (the number read and the
    face). Subclasses give `__len__`, `name(i)` (for messages) and `encoded(i)` (the image file's bytes).

    Safe to share between threads; each unreadable face is reported once per process.
    """

    def __init__(self, size):
        if not (isinstance(size, int) and size > 0):
            raise ValueError(f'the face size must be a positive integer, not {size!r}')
        self.size = size
        self._unreadable = set()
        self._lock = threading.Lock()

    def __len__(self):
        raise NotImplementedError

    def name(self, index):
        raise NotImplementedError

    def encoded(self, index):
        raise NotImplementedError

    def __getitem__(self, index):
        return self.read(index)[1]

    def read(self, index):
        """(number read, uint8 RGB face): face `index`, or when it cannot be read the next readable one after it
        (wrapping around), so that the caller always gets a face."""
        count = len(self)
        if not 0 <= index < count:
            raise IndexError(f'face {index} of a source of {count}')
        for step in range(count):
            candidate = (index + step) % count
            if candidate in self._unreadable:
                continue
            try:
                return candidate, decode_face(self.encoded(candidate), self.size)
            # Whatever a damaged file or record makes the reader or decoder raise (OSError, cv2.error, lmdb.Error,
            # tfds's errors, ...), training goes on without it.
            except Exception as error:  # noqa: BLE001
                self._report(candidate, error)
        raise ValueError(f'{self}: none of its {count} faces can be read')

    def _report(self, index, error):
        with self._lock:
            if index in self._unreadable:
                return
            self._unreadable.add(index)
        warnings.warn(f'{self.name(index)}: skipped, {error}', UnreadableImageWarning, stacklevel=2)


def list_images(root):
    """The image files under `root` (sub-folders included), sorted by their path relative to `root`, so that the
    order (and with it the numbering of the component landmark file) is the same on every machine."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f'{root}: not a folder')
    paths = [path for path in root.rglob('*') if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()]
    return sorted(paths, key=lambda path: path.relative_to(root).as_posix())


class FolderFaces(FaceSource):
    """The image files of a folder and its sub-folders (png, jpg, jpeg, webp, bmp), in sorted order."""

    def __init__(self, root, size):
        super().__init__(size)
        self.root = os.fspath(root)
        self.paths = list_images(root)
        if not self.paths:
            raise ValueError(f'{self.root}: no {", ".join(IMAGE_EXTENSIONS)} files in it')

    def __len__(self):
        return len(self.paths)

    def __str__(self):
        return self.root

    def name(self, index):
        return str(self.paths[index])

    def encoded(self, index):
        return self.paths[index].read_bytes()


class LmdbFaces(FaceSource):
    """basicsr's LMDB layout (scripts/data_preparation/create_lmdb.py): a folder `NAME.lmdb` with data.mdb and
    meta_info.txt, one line per image, `00000.png (512,512,3) 1`. As the official dataset, a face's key is the line's
    text before its first '.', its number the line's position, and its record the encoded image file."""

    def __init__(self, path, size):
        super().__init__(size)
        self.path = os.fspath(path)
        meta = os.path.join(self.path, 'meta_info.txt')
        if not (os.path.isfile(os.path.join(self.path, 'data.mdb')) and os.path.isfile(meta)):
            raise ValueError(f'{self.path}: not an LMDB folder of the official layout (data.mdb and meta_info.txt)')
        with open(meta, encoding='utf-8') as lines:
            self.keys = [line.split('.')[0] for line in lines if line.strip()]
        if not self.keys:
            raise ValueError(f'{meta}: lists no images')
        _lmdb_environment(self.path)  # a database that cannot be opened fails here, not face by face

    def __len__(self):
        return len(self.keys)

    def __str__(self):
        return self.path

    def name(self, index):
        return f'{self.path}[{self.keys[index]}]'

    def encoded(self, index):
        with _lmdb_environment(self.path).begin(write=False) as transaction:
            data = transaction.get(self.keys[index].encode('ascii'))
        if data is None:
            raise ValueError('no such record in data.mdb')
        return data


# The open LMDB environments by process and real path: lmdb opens a database once per process (a second open of it
# fails), and an environment must not cross a fork.
_LMDB_ENVIRONMENTS = {}
_LMDB_LOCK = threading.Lock()


def _lmdb_environment(path):
    key = os.getpid(), os.path.realpath(path)
    with _LMDB_LOCK:
        if key not in _LMDB_ENVIRONMENTS:
            try:
                import lmdb
            except ImportError:
                raise ImportError("reading LMDB needs the lmdb package: pip install 'gfpgan-jax[train]'") from None
            try:
                # Read-only, unlocked and without readahead, as basicsr opens it: pages are fetched at random.
                _LMDB_ENVIRONMENTS[key] = lmdb.open(path, readonly=True, lock=False, readahead=False)
            except lmdb.Error as error:
                raise ValueError(f'{path}: cannot open the LMDB database: {error}') from None
        return _LMDB_ENVIRONMENTS[key]


def import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError("tensorflow-datasets sources need the 'tfds' extra: pip install 'gfpgan-jax[tfds]'") from None
    return tfds


class TfdsFaces(FaceSource):
    """A split of a tensorflow-datasets image dataset, prepared in the array_record format, read at random with
    `tfds.data_source`, which needs neither TensorFlow nor a network for a dataset already on disk (one made by
    `gfpgan_jax.data.tfds_folder.prepare_folder`, or any registered one prepared with file_format='array_record').

    name: 'dataset[/config][:version]'; image_key: the image feature, read as its encoded bytes and decoded here as
    the other sources are; download: let tfds download and prepare a registered dataset that is not on disk.
    """

    def __init__(self, name, size, *, split='train', data_dir=None, image_key='image', download=False):
        super().__init__(size)
        tfds = import_tfds()
        self.description = f'tfds:{name}[{split}]'
        self.image_key = image_key
        self._records = tfds.data_source(name, split=split, data_dir=data_dir, download=download,
                                         decoders={image_key: tfds.decode.SkipDecoding()})

    def __len__(self):
        return len(self._records)

    def __str__(self):
        return self.description

    def name(self, index):
        return f'{self.description}[{index}]'

    def encoded(self, index):
        return self._records[index][self.image_key]


def open_faces(location, size, *, split='train', data_dir=None):
    """The source at `location`: 'tfds:NAME' (a tensorflow-datasets dataset, `split` of it, under `data_dir`), a
    folder holding data.mdb and meta_info.txt (LMDB), or any other folder (its image files)."""
    location = os.fspath(location)
    if location.startswith('tfds:'):
        return TfdsFaces(location[len('tfds:'):], size, split=split, data_dir=data_dir)
    if os.path.isfile(os.path.join(location, 'data.mdb')):
        return LmdbFaces(location, size)
    return FolderFaces(location, size)
