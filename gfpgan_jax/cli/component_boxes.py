"""`python -m gfpgan_jax.cli.component_boxes`: a facial component landmark file, in the layout of the official
FFHQ_eye_mouth_landmarks_512.pth, for a folder of aligned faces, from RetinaFace's five points.

Faces are numbered in the order FolderFaces reads the folder (sorted, sub-folders included) and measured at the
training size (--size), resized as for training. Where a face has several detections the one nearest the image's
centre is used. Eyes are centred on the detected eye centres, the mouth between the mouth corners; the half
lengths are fixed fractions of the eye distance and of the mouth's width (see gfpgan_jax.data.components). A file
that cannot be read, or with no face found, is reported and left out of the landmark file; training then runs
without component losses for it.
"""
import argparse
import os
import sys

from tqdm import tqdm

from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.data.components import five_point_landmarks, write_landmarks
from gfpgan_jax.data.sources import FolderFaces, decode_face
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import DownloadError
from gfpgan_jax.inference.alignment import face_landmarks
from gfpgan_jax.inference.detection import FaceDetector
from gfpgan_jax.inference.pipeline import DETECTION_THRESHOLD


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m gfpgan_jax.cli.component_boxes', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--input', required=True, help='folder of aligned faces (sub-folders included)')
    p.add_argument('--output', required=True, help='landmark file to write (.pth)')
    p.add_argument('--size', type=int, default=512, help='the training face size; faces are resized to it')
    p.add_argument('--detector-path', help="facexlib's detection_Resnet50_Final.pth or detection_mobilenet0.25_"
                                           "Final.pth (default: the ResNet50 one, downloaded on first use)")
    p.add_argument('--conf-threshold', type=float, default=DETECTION_THRESHOLD,
                   help='least detection score (default %(default)s, as the official pipeline)')
    return p.parse_args(argv)


def measure_faces(faces, detector, conf_threshold=DETECTION_THRESHOLD):
    """({face number: (3, 3) landmark rows}, number of faces left out) for every face of a FolderFaces; each face
    left out is reported on one line."""
    landmarks, failures = {}, 0
    for index in tqdm(range(len(faces)), unit='face', desc='measuring'):
        try:
            try:
                face = decode_face(faces.encoded(index), faces.size)
            except OSError as error:
                raise ValueError(f'cannot read it: {error.strerror or error}') from None
            detections = detector.detect_faces(face[..., ::-1], conf_threshold)  # the detector takes BGR
            points = face_landmarks(detections, face.shape, only_center_face=True)
            if not len(points):
                raise ValueError('no face found')
        except ValueError as error:
            tqdm.write(f'error: {faces.name(index)}: {error}', file=sys.stderr)
            failures += 1
            continue
        landmarks[index] = five_point_landmarks(points[0], faces.size)
    return landmarks, failures


def main(argv=None):
    args = parse_args(argv)
    if args.size < 1:
        print('error: --size must be at least 1', file=sys.stderr)
        return 2
    try:
        faces = FolderFaces(args.input, args.size)
        if args.detector_path:
            detector = FaceDetector.from_checkpoint(args.detector_path)
        else:
            detector = FaceDetector.from_pretrained()
    except (ValueError, DownloadError, ConversionError) as error:  # CheckpointError is a ValueError
        print(f'error: {error}', file=sys.stderr)
        return 2
    landmarks, failures = measure_faces(faces, detector, args.conf_threshold)
    if not landmarks:
        print(f'error: no face of {args.input} could be measured; nothing written', file=sys.stderr)
        return 1
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        write_landmarks(args.output, landmarks)
    except (OSError, CheckpointError) as error:
        print(f'error: {args.output}: cannot write it: {getattr(error, "strerror", None) or error}', file=sys.stderr)
        return 2
    print(f'wrote the component landmarks of {len(landmarks)} of {len(faces)} faces to {args.output}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
