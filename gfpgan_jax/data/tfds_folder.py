"""A folder of face images stored as a tensorflow-datasets dataset (array_record), readable with `TfdsFaces`.

`tfds.folder_dataset.ImageFolder` reads through tf.data and so needs TensorFlow; this builder stores the image
files' bytes as they are (nothing is decoded or re-encoded, so TensorFlow is not needed) in the folder's sorted
order, unshuffled, so that face i is the i-th file as `FolderFaces` and the component landmark file number them.
(tensorflow-datasets 4.9 imports importlib_resources for a builder defined in a package, but declares it only for
Python < 3.9; the 'tfds' extra lists it.)

>>> prepare_folder('my_faces/', data_dir='tfds_data', name='my_faces')
>>> faces = TfdsFaces('my_faces', 512, data_dir='tfds_data')
"""
import os

from gfpgan_jax.data.sources import import_tfds, list_images


def prepare_folder(folder, data_dir, *, name='face_folder', split='train', version='1.0.0'):
    """Writes the images under `folder` as split `split` of dataset `name` into `data_dir`; returns `name`.

    Files are stored unchecked: an unreadable one is reported and skipped when it is read, as for a folder.
    """
    tfds = import_tfds()
    paths = list_images(folder)
    if not paths:
        raise ValueError(f'{os.fspath(folder)}: no image files in it')

    class FaceFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)

        def _info(self):
            features = tfds.features.FeaturesDict({'image': tfds.features.Image(shape=(None, None, 3))})
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples()}

        def _generate_examples(self):
            for index, path in enumerate(paths):
                yield index, {'image': path.read_bytes()}

    # The dataset's name is the builder's, which tfds otherwise derives from the class name.
    FaceFolder.name = name
    FaceFolder(data_dir=os.fspath(data_dir), file_format='array_record').download_and_prepare()
    return name
