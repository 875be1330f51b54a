"""The training input pipeline: face sources (folder, the official LMDB layout, tensorflow-datasets), the component
landmark file and its boxes against the official dataset's arithmetic, the sharded, seeded, resumable batches, and
the component_boxes command.

Faces are 32-64 px. The official references: basicsr 1.4.2's make_lmdb_from_imgs / FileClient('lmdb') and
gfpgan 1.3.8's FFHQDegradationDataset.get_component_coordinates.
"""
import copy
import json
import os
import socket
import subprocess
import sys
import types
import warnings
import zipfile
from pathlib import Path

import cv2
import jax
import numpy as np
import pytest
import torch

import official  # noqa: F401  (mends torchvision's import before basicsr's)
from basicsr.utils import FileClient, imfrombytes
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset
from jax.sharding import NamedSharding, PartitionSpec

from gfpgan_jax.cli import component_boxes as component_boxes_cli
from gfpgan_jax.data.components import (ComponentBoxes, component_boxes, five_point_landmarks, flip_boxes,
                                        read_landmarks, write_landmarks)
from gfpgan_jax.data.pipeline import FaceBatches
from gfpgan_jax.data.sources import FolderFaces, LmdbFaces, TfdsFaces, UnreadableImageWarning, open_faces
from gfpgan_jax.data.tfds_folder import prepare_folder
from gfpgan_jax.files.pth import CheckpointError, load_pth, save_pth_data
from gfpgan_jax.inference.alignment import FACE_TEMPLATE_512
from parity_utils import detection_rows

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
# The boxes of a flipped face: ours flip float32 boxes, the official flips the float64 centres first.
FLIP_TOL = 1e-4  # px
NO_BOXES_WARNING = 'ignore:no facial component boxes'


def write_faces(folder, count, size=SIZE, ext='.png', seed=0):
    """`count` random RGB faces saved as folder/face_{i}{ext} (BGR files, as cv2 writes); returns them (RGB)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    faces = np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    for index, face in enumerate(faces):
        cv2.imwrite(str(folder / f'face_{index:02d}{ext}'), face[..., ::-1])
    return faces


def collect(batches, count):
    return [next(batches) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------- sources

def test_folder_faces_sorted_nested_and_resized(tmp_path):
    rng = np.random.default_rng(1)
    images = {'b.png': 48, 'a/z.jpg': 32, 'a/c.webp': 16, 'a/d/e.BMP': 32, 'c.jpeg': 40}
    for name, size in images.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    (tmp_path / 'notes.txt').write_text('not an image')
    faces = FolderFaces(tmp_path, SIZE)
    assert [p.relative_to(tmp_path).as_posix() for p in faces.paths] == ['a/c.webp', 'a/d/e.BMP', 'a/z.jpg',
                                                                        'b.png', 'c.jpeg']
    for index, path in enumerate(faces.paths):
        bgr = cv2.imread(str(path))
        side = bgr.shape[0]
        if side != SIZE:  # area averaging to shrink, bilinear to enlarge
            bgr = cv2.resize(bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA if side > SIZE else cv2.INTER_LINEAR)
        face = faces[index]
        assert face.dtype == np.uint8 and face.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(face, bgr[..., ::-1])
    assert isinstance(open_faces(tmp_path, SIZE), FolderFaces)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no .png'):
        FolderFaces(tmp_path / 'empty', SIZE)
    with pytest.raises(ValueError, match='not a folder'):
        FolderFaces(tmp_path / 'missing', SIZE)


def test_unreadable_files_are_named_once_and_batches_stay_full(tmp_path):
    write_faces(tmp_path, 6)
    good_jpeg = cv2.imencode('.jpg', np.full((SIZE, SIZE, 3), 99, np.uint8))[1].tobytes()
    bad = {'face_01a.jpg': good_jpeg[:len(good_jpeg) // 2],  # truncated JPEG
           'face_03a.png': b'this is text, not a PNG',
           'face_05a.png': b''}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    faces = FolderFaces(tmp_path, SIZE)
    bad_indices = {index for index, path in enumerate(faces.paths) if path.name in bad}
    assert len(faces) == 9 and len(bad_indices) == 3
    with pytest.warns(UnreadableImageWarning) as record, warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'no facial component boxes')
        batches = FaceBatches(faces, 4, seed=3, shard_index=0, shard_count=1, threads=2)
        got = collect(batches, 7)  # 28 faces: three passes over the folder
    for batch in got:
        assert batch['gt'].shape == (4, SIZE, SIZE, 3) and batch['gt'].dtype == np.uint8
        assert not bad_indices & set(batch['index'].tolist())
    messages = [str(warning.message) for warning in record]
    for name in bad:
        assert sum(name in message for message in messages) == 1, (name, messages)
    assert len(messages) == 3


def test_a_source_with_no_readable_face_says_so(tmp_path):
    (tmp_path / 'a.png').write_bytes(b'')
    faces = FolderFaces(tmp_path, SIZE)
    with pytest.warns(UnreadableImageWarning), pytest.raises(ValueError, match='none of its 1 faces can be read'):
        faces.read(0)


def test_lmdb_faces_read_the_official_layout(tmp_path):
    folder = tmp_path / 'faces'
    faces = write_faces(folder, 4)
    names = sorted(os.listdir(folder))
    lmdb_path = str(tmp_path / 'ffhq_32.lmdb')
    make_lmdb_from_imgs(str(folder), lmdb_path, names, [name.split('.')[0] for name in names])  # basicsr's tool
    with open(os.path.join(lmdb_path, 'meta_info.txt'), 'a') as meta:
        meta.write('ghost.png (32,32,3) 1\n')  # listed, but with no record
    client = FileClient('lmdb', db_paths=lmdb_path)
    # BGR uint8, as the official dataset reads them; its keys, as the official dataset lists them.
    reference = [imfrombytes(client.get(name.split('.')[0]), float32=False) for name in names]
    client.client._client['default'].close()  # lmdb opens a database once per process
    source = open_faces(lmdb_path, SIZE)
    assert isinstance(source, LmdbFaces) and len(source) == 5
    for index, (expected, key) in enumerate(zip(reference, ['face_00', 'face_01', 'face_02', 'face_03'])):
        assert source.keys[index] == key
        np.testing.assert_array_equal(source[index], expected[..., ::-1])
        np.testing.assert_array_equal(source[index], faces[index])
    with pytest.warns(UnreadableImageWarning, match=r'ffhq_32.lmdb\[ghost\]: skipped, .*no such record'):
        index, face = source.read(4)
    assert index == 0 and np.array_equal(face, faces[0])
    with pytest.raises(ValueError, match='not an LMDB folder'):
        LmdbFaces(folder, SIZE)


def _registered_tfds_builder():
    import tensorflow_datasets as tfds

    class GfpganJaxTinyFaces(tfds.core.GeneratorBasedBuilder):
        """A registered dataset (as tfds's catalogue's are), made from files so TensorFlow is not needed."""
        VERSION = tfds.core.Version('1.0.0')
        folder = None

        def _info(self):
            features = tfds.features.FeaturesDict({'image': tfds.features.Image(shape=(None, None, 3))})
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {'validation': self._generate_examples()}

        def _generate_examples(self):
            for index, path in enumerate(sorted(Path(self.folder).iterdir())):
                yield index, {'image': str(path)}

    return GfpganJaxTinyFaces


def test_tfds_sources_work_offline_without_tensorflow(tmp_path):
    folder = tmp_path / 'faces'
    faces = write_faces(folder, 3)
    (folder / 'face_01a.png').write_bytes(b'not a PNG')
    name = prepare_folder(folder, tmp_path / 'tfds', name='my_faces')
    source = TfdsFaces(name, SIZE, data_dir=tmp_path / 'tfds')
    assert len(source) == 4
    for index, expected in zip((0, 1, 3), faces):
        np.testing.assert_array_equal(source[index], expected)
    with pytest.warns(UnreadableImageWarning, match=r'tfds:my_faces\[train\]\[2\]: skipped'):
        index, face = source.read(2)
    assert index == 3 and np.array_equal(face, faces[2])
    assert isinstance(open_faces('tfds:my_faces', SIZE, data_dir=tmp_path / 'tfds'), TfdsFaces)

    builder = _registered_tfds_builder()
    builder.folder = folder
    builder(data_dir=str(tmp_path / 'tfds'), file_format='array_record').download_and_prepare()
    registered = TfdsFaces('gfpgan_jax_tiny_faces', SIZE, split='validation', data_dir=tmp_path / 'tfds')
    np.testing.assert_array_equal(registered[3], faces[2])
    assert 'tensorflow' not in sys.modules


# --------------------------------------------------------------------------------------------------------- batches

@pytest.fixture(scope='module')
def ten_faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ten_faces')
    write_faces(folder, 10)
    return folder


def shard_stream(folder, shard_index, shard_count, batches, seed=7, host_batch_size=2):
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'no facial component boxes')
        source = FaceBatches(FolderFaces(folder, SIZE), host_batch_size, seed=seed, shard_index=shard_index,
                             shard_count=shard_count, threads=2)
    return np.concatenate([batch['index'] for batch in collect(source, batches)])


def interleave(shards):
    """The global order back from the hosts' streams: host h's j-th face is the global (j * hosts + h)-th."""
    return np.stack(shards, axis=1).ravel()


def test_shards_are_disjoint_cover_each_epoch_and_reshuffle(ten_faces):
    # Three hosts on ten faces: epochs end in the middle of a round of hosts.
    shards = [shard_stream(ten_faces, host, 3, batches=5) for host in range(3)]
    stream = interleave(shards)
    epochs = stream[:30].reshape(3, 10)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))  # the hosts' shards of an epoch: disjoint, and all faces
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    # Sharding does not change the order: one host alone sees the same sequence.
    np.testing.assert_array_equal(shard_stream(ten_faces, 0, 1, batches=15), stream)
    np.testing.assert_array_equal(shard_stream(ten_faces, 1, 3, batches=5), shards[1])  # same seed, same batches
    assert not np.array_equal(shard_stream(ten_faces, 1, 3, batches=5, seed=8), shards[1])


def test_batches_are_the_faces_with_their_boxes(ten_faces, tmp_path):
    rows = np.random.default_rng(2).uniform(20, 200, (10, 3, 3))
    write_landmarks(tmp_path / 'landmarks.pth', {index: rows[index] for index in range(10) if index != 4})
    faces = FolderFaces(ten_faces, SIZE)
    with pytest.warns(UserWarning, match='1 of the 10 faces have no component boxes'):
        batches = FaceBatches(faces, 5, components=tmp_path / 'landmarks.pth', shard_index=0, shard_count=1)
    assert batches.has_boxes
    for batch in collect(batches, 2):
        for index, face, boxes, has_boxes in zip(batch['index'], batch['gt'], batch['boxes'], batch['has_boxes']):
            np.testing.assert_array_equal(face, faces[index])
            assert has_boxes == (index != 4)
            expected = component_boxes(rows[index]) if index != 4 else np.zeros((3, 4))
            np.testing.assert_array_equal(boxes, expected)
    assert batch['boxes'].dtype == np.float32 and batch['has_boxes'].dtype == bool
    assert batch['index'].dtype == np.int32
    with pytest.warns(UserWarning, match='no facial component boxes: the component losses are off'):
        assert not FaceBatches(faces, 5, shard_index=0, shard_count=1).has_boxes


def test_a_restored_iterator_continues_exactly(ten_faces):
    def fresh():
        return FaceBatches(FolderFaces(ten_faces, SIZE), 3, seed=11, shard_index=1, shard_count=2, threads=2)

    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'no facial component boxes')
        running, resumed, other = fresh(), fresh(), fresh()
    collect(running, 4)
    state = json.loads(json.dumps(running.get_state()))  # as a checkpoint stores it
    assert running.epoch == 2  # 4 batches x 3 faces x 2 hosts = 24 faces of 10
    expected = collect(running, 4)
    collect(resumed, 1)  # a restored iterator may have been elsewhere, its prefetched faces too
    resumed.set_state(state)
    assert resumed.epoch == 2
    for want, got in zip(expected, collect(resumed, 4)):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'no facial component boxes')
        other = FaceBatches(FolderFaces(ten_faces, SIZE), 3, seed=12, shard_index=1, shard_count=2)
    with pytest.raises(ValueError, match=r'other data settings: seed 11 \(now 12\)'):
        other.set_state(state)


@pytest.mark.filterwarnings(NO_BOXES_WARNING)
def test_batches_are_global_arrays_on_the_mesh(ten_faces):
    mesh = jax.make_mesh((1,), ('data',))
    sharding = NamedSharding(mesh, PartitionSpec('data'))
    batch = next(FaceBatches(FolderFaces(ten_faces, SIZE), 2, sharding, seed=0))
    for key, shape, dtype in [('gt', (2, SIZE, SIZE, 3), np.uint8), ('boxes', (2, 3, 4), np.float32),
                              ('has_boxes', (2,), np.bool_), ('index', (2,), np.int32)]:
        assert isinstance(batch[key], jax.Array) and batch[key].sharding == sharding
        assert batch[key].shape == shape and batch[key].dtype == dtype
    with pytest.raises(ValueError, match='each host must read its own shard: shard 0 of 2'):
        FaceBatches(FolderFaces(ten_faces, SIZE), 2, sharding, shard_index=0, shard_count=2)
    with pytest.raises(ValueError, match='seed -1 must be'):
        FaceBatches(FolderFaces(ten_faces, SIZE), 2, seed=-1)


_HOST = '''
import json, sys, warnings
import jax
import numpy as np
jax.config.update('jax_cpu_collectives_implementation', 'gloo')
address, process, folder, out = sys.argv[1:]
jax.distributed.initialize(coordinator_address=address, num_processes=2, process_id=int(process))
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec
from gfpgan_jax.data.pipeline import FaceBatches
from gfpgan_jax.data.sources import FolderFaces
warnings.simplefilter('ignore')
sharding = NamedSharding(jax.make_mesh((2,), ('data',)), PartitionSpec('data'))
batches = FaceBatches(FolderFaces(folder, 32), 2, sharding, seed=7, threads=2)
seen = []
for _ in range(5):
    batch = next(batches)
    local = np.concatenate([np.asarray(shard.data) for shard in batch['index'].addressable_shards])
    gathered = multihost_utils.process_allgather(batch['gt'], tiled=True)
    seen.append({'local': local.tolist(), 'shape': list(batch['gt'].shape), 'gathered': gathered.shape[0],
                 'index': multihost_utils.process_allgather(batch['index'], tiled=True).tolist()})
with open(out, 'w') as file:
    json.dump(seen, file)
'''


def test_two_processes_read_their_own_shards(ten_faces, tmp_path):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        address = f'127.0.0.1:{probe.getsockname()[1]}'
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(ROOT)}
    env.pop('XLA_FLAGS', None)
    hosts = [subprocess.Popen([sys.executable, '-c', _HOST, address, str(process), str(ten_faces),
                               str(tmp_path / f'host{process}.json')], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for process in range(2)]
    for host in hosts:
        output = host.communicate(timeout=120)[0].decode(errors='replace')
        assert host.returncode == 0, output[-3000:]
    seen = [json.loads((tmp_path / f'host{process}.json').read_text()) for process in range(2)]
    for process in range(2):
        local = np.concatenate([batch['local'] for batch in seen[process]])
        np.testing.assert_array_equal(local, shard_stream(ten_faces, process, 2, batches=5))  # its own shard
    for first, second in zip(*seen):
        assert first['shape'] == [4, SIZE, SIZE, 3] and first['gathered'] == 4
        assert first['index'] == second['index'] == first['local'] + second['local']
    stream = interleave([np.concatenate([b['local'] for b in seen[process]]) for process in range(2)])
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:20].tolist()) == list(range(10))


# ------------------------------------------------------------------------------------------------------ components

def official_landmark_file(path, count, seed=0):
    """A file made as GFPGAN's scripts/parse_landmark.py makes FFHQ_eye_mouth_landmarks_512.pth: lists of
    numpy.float64 [x, y, half_len], torch.save'd."""
    rng = np.random.default_rng(seed)
    entries = {}
    for index in range(count):
        entries[f'{index:08d}'] = {part: [*rng.uniform(40, 470, 2), np.max((rng.uniform(0, 40), 16))]
                                   for part in ('left_eye', 'right_eye', 'mouth')}
    assert all(type(value) is np.float64 for value in entries['00000000']['mouth'])
    torch.save(entries, path)
    return entries


def official_boxes(entries, index, flip, out_size=512):
    """FFHQDegradationDataset.get_component_coordinates on a fresh copy of the file (the official flips the
    loaded entries in place, so a shared copy would drift)."""
    dataset = types.SimpleNamespace(components_list=copy.deepcopy(entries), out_size=out_size, eye_enlarge_ratio=1.4)
    locations = FFHQDegradationDataset.get_component_coordinates(dataset, index, [flip])
    return torch.stack(locations).numpy()


def test_landmark_file_gives_the_official_boxes(tmp_path):
    path = tmp_path / 'FFHQ_eye_mouth_landmarks_512.pth'
    entries = official_landmark_file(path, 5)
    landmarks = read_landmarks(path)
    assert sorted(landmarks) == list(range(5))
    boxes = ComponentBoxes(path, 512)
    flipped_error = 0.0
    for index in range(5):
        ours = boxes.get(index)
        assert ours.dtype == np.float32 and ours.shape == (3, 4)
        np.testing.assert_array_equal(ours, official_boxes(entries, index, flip=False))
        flipped_error = max(flipped_error, np.abs(flip_boxes(ours, 512) - official_boxes(entries, index, True)).max())
    assert flipped_error <= FLIP_TOL, flipped_error  # measured: 3.1e-5 px
    half_size = ComponentBoxes(path, 256, landmark_size=512)
    np.testing.assert_array_equal(half_size.get(2), component_boxes(landmarks[2], scale=0.5))
    assert boxes.get(5) is None and boxes.missing(7) == 2


def test_landmark_files_of_another_structure_are_refused(tmp_path):
    path = tmp_path / 'bad.pth'
    torch.save({'00000000': {'left_eye': [1.0, 2.0, 3.0], 'right_eye': [1.0, 2.0, 3.0]}}, path)
    with pytest.raises(ValueError, match=r"entry '00000000' does not give \[x, y, half_len\]"):
        read_landmarks(path)
    torch.save({'w': torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="entry 'w' is not a face number"):
        read_landmarks(path)


def test_pth_reads_numpy_scalars_but_nothing_else_of_numpy(tmp_path):
    values = [np.float64(1.5), np.float32(-2.25), np.int64(7), np.bool_(True), np.complex64(1 - 2j), 0.5]
    torch.save({'values': values}, tmp_path / 'scalars.pth')
    torch.save({'values': values}, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    for name in ('scalars.pth', 'legacy.pth'):
        loaded = load_pth(tmp_path / name)['values']
        assert [type(value) for value in loaded] == [type(value) for value in values] and loaded == values
    torch.save({'w': [np.zeros(2)]}, tmp_path / 'array.pth')
    with pytest.raises(CheckpointError, match='refuses to load: .*numpy'):
        load_pth(tmp_path / 'array.pth')
    # A scalar whose type could hold a Python object: the pickle's dtype rewritten from f8 to O8.
    with zipfile.ZipFile(tmp_path / 'scalars.pth') as archive:
        pickled = archive.read('scalars/data.pkl')
    assert pickled.count(b'X\x02\x00\x00\x00f8') == 1
    with zipfile.ZipFile(tmp_path / 'object.pth', 'w') as archive:
        archive.writestr('archive/data.pkl', pickled.replace(b'X\x02\x00\x00\x00f8', b'X\x02\x00\x00\x00O8'))
        archive.writestr('archive/version', '3\n')
    with pytest.raises(CheckpointError, match="a numpy scalar of type 'O8', which is not a plain number type"):
        load_pth(tmp_path / 'object.pth')


def test_save_pth_data_is_read_by_torch_and_refuses_other_objects(tmp_path):
    data = {'00000003': {'mouth': [np.float64(1.25), np.float64(2.5), np.float64(16.0)]}, 'n': [1, 'a', None]}
    save_pth_data(data, tmp_path / 'data.pth')
    assert torch.load(tmp_path / 'data.pth', weights_only=False) == data
    assert load_pth(tmp_path / 'data.pth') == data
    with pytest.raises(CheckpointError, match='it would hold a ndarray'):
        save_pth_data({'w': np.zeros(2)}, tmp_path / 'bad.pth')
    assert sorted(os.listdir(tmp_path)) == ['data.pth']


def test_five_point_landmarks_use_the_stated_fractions():
    points = [[100, 200], [200, 200], [150, 250], [120, 300], [180, 300]]
    np.testing.assert_allclose(five_point_landmarks(points, 512),
                               [[100, 200, 24], [200, 200, 24], [150, 300, 30]])  # 0.24 x 100; 0.5 x 60
    tiny = five_point_landmarks(np.array(points) / 8, 1024)  # half lengths 3 and 3.75, raised to 16 px at 512
    np.testing.assert_allclose(tiny[:, 2], [32, 32, 32])


# ------------------------------------------------------------------------------------------------ the command line

class StubDetector:
    """Finds the FFHQ template's five points in every face that is not all black; records what it is given."""

    def __init__(self, size):
        self.rows = detection_rows(FACE_TEMPLATE_512[None] * size / 512)
        self.images = []

    def detect_faces(self, image, conf_threshold):
        self.images.append(image)
        return self.rows.copy() if image.any() else np.zeros((0, 15), np.float32)


def test_component_boxes_command(tmp_path, monkeypatch, capsys):
    folder = tmp_path / 'faces'
    write_faces(folder, 3, size=64)
    cv2.imwrite(str(folder / 'face_01a.png'), np.zeros((64, 64, 3), np.uint8))  # no face in it
    (folder / 'face_02a.png').write_text('broken')
    stub = StubDetector(64)
    monkeypatch.setattr(component_boxes_cli.FaceDetector, 'from_pretrained', lambda: stub)
    output = tmp_path / 'out' / 'landmarks.pth'
    assert component_boxes_cli.main(['--input', str(folder), '--output', str(output), '--size', '64']) == 1
    err = capsys.readouterr().err
    assert f'{folder / "face_01a.png"}: no face found' in err and f'{folder / "face_02a.png"}: not a readable' in err
    np.testing.assert_array_equal(stub.images[0], cv2.imread(str(folder / 'face_00.png')))  # BGR, as cv2 reads
    landmarks = read_landmarks(output)
    assert sorted(landmarks) == [0, 1, 3]  # of face_00, face_01, face_01a (no face), face_02, face_02a (broken)
    expected = five_point_landmarks(FACE_TEMPLATE_512 * 64 / 512, 64)
    for rows in landmarks.values():
        np.testing.assert_allclose(rows, expected, atol=1e-4)  # the detector's rows are float32
    # The official dataset takes the file as it takes FFHQ_eye_mouth_landmarks_512.pth.
    entries = torch.load(output, weights_only=False)
    np.testing.assert_array_equal(official_boxes(entries, 3, flip=False, out_size=64),
                                  ComponentBoxes(output, 64).get(3))


def test_component_boxes_command_line_errors(tmp_path):
    write_faces(tmp_path / 'faces', 1)
    result = subprocess.run([sys.executable, '-m', 'gfpgan_jax.cli.component_boxes', '--input', str(tmp_path / 'faces'),
                             '--output', str(tmp_path / 'out.pth'), '--detector-path', str(tmp_path / 'missing.pth')],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
    assert result.returncode == 2
    assert result.stderr.strip() == f'error: {tmp_path / "missing.pth"}: cannot open it: No such file or directory'
    assert not (tmp_path / 'out.pth').exists()
