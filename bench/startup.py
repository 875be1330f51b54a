"""One photo, whole processes, from start to exit: infer.py against the official inference_gfpgan.py.

What a person waits for when restoring one photo: the interpreter starting, the imports, loading the weights,
compiling (gfpgan-jax) and restoring, saving the results. Each measurement starts a fresh `python` and times it to
its exit. Three runs, interleaved so that a busy machine slows them alike, with the median reported:

- gfpgan-jax, compilation cache warm: infer.py's main on the photo, after one run that filled the cache (the default
  since JAX's persistent compilation cache is on in the weights cache folder);
- gfpgan-jax, cache off (GFPGAN_JAX_COMPILE_CACHE=off): every program compiled, as every run did before;
- official: a driver doing what gfpgan 1.3.8's inference_gfpgan.py does with its defaults on the CPU (the script
  is not in the wheel): GFPGANer(v1.3 'clean', upscale 2, no background upsampler on the CPU), `enhance` on the
  photo, and the same four kinds of files written with basicsr's imwrite. It imports tests/official.py first,
  which lets gfpgan, basicsr and facexlib import next to this torch.

Both sides load the same random weights laid out as the official files (GFPGAN v1.3, RetinaFace ResNet50,
ParseNet: see bench/large_photo.py) from files, and restore matplotlib's Grace Hopper portrait (512 x 600, from
examples/photos) with its two known faces: the detector runs in full, then reports those faces, since random
weights find none.

    python bench/startup.py --repeats 3 --json startup.json
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from large_photo import LANDMARKS, PORTRAIT, ROOT, KnownFaces, known_faces, make_weights


def run_ours(photo, output):
    from gfpgan_jax.cli import infer
    from gfpgan_jax.inference.detection import FaceDetector
    from gfpgan_jax.files.releases import helper_weights_path
    detector = FaceDetector.from_checkpoint(helper_weights_path(FaceDetector.RELEASE))
    infer.FaceDetector.from_pretrained = classmethod(lambda cls, **kwargs: KnownFaces(detector, LANDMARKS))
    return infer.main(['-i', photo, '-o', output, '-v', '1.3'])


def run_official(photo, output):
    """inference_gfpgan.py's steps with its defaults, on the CPU; weights from ./gfpgan/weights as it keeps them."""
    sys.path.insert(0, os.path.join(ROOT, 'tests'))
    import official  # noqa: F401
    import cv2
    import torch
    from basicsr.utils import imwrite
    from facexlib.detection.retinaface import RetinaFace
    from gfpgan import GFPGANer
    torch.set_num_threads(os.cpu_count())  # tests/official.py pins one thread for parallel test workers
    detect = RetinaFace.detect_faces
    RetinaFace.detect_faces = lambda self, image, *args, **kwargs: (detect(self, image, *args, **kwargs),
                                                                     known_faces(image, LANDMARKS))[1]
    restorer = GFPGANer(model_path=os.path.join(os.environ['GFPGAN_JAX_HOME'], 'GFPGANv1.3.pth'), upscale=2,
                        arch='clean', channel_multiplier=2, bg_upsampler=None)
    name, extension = os.path.splitext(os.path.basename(photo))
    cropped_faces, restored_faces, restored = restorer.enhance(cv2.imread(photo, cv2.IMREAD_COLOR),
                                                               has_aligned=False, only_center_face=False,
                                                               paste_back=True, weight=0.5)
    for index, (cropped, face) in enumerate(zip(cropped_faces, restored_faces)):
        imwrite(cropped, os.path.join(output, 'cropped_faces', f'{name}_{index:02d}.png'))
        imwrite(face, os.path.join(output, 'restored_faces', f'{name}_{index:02d}.png'))
        imwrite(np.concatenate([cropped, face], axis=1), os.path.join(output, 'cmp', f'{name}_{index:02d}.png'))
    imwrite(restored, os.path.join(output, 'restored_imgs', f'{name}{extension}'))
    return 0


def timed(side, photo, output, env, cwd):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', side, '--photo', photo,
                           '--output', output], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f'{side} failed ({done.returncode}):\n{done.stderr[-3000:]}')
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--home', help='a folder for the random weights (made once, then reused)')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--child', choices=('ours', 'official'), help=argparse.SUPPRESS)
    p.add_argument('--photo', help=argparse.SUPPRESS)
    p.add_argument('--output', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.exit((run_ours if args.child == 'ours' else run_official)(args.photo, args.output))

    with tempfile.TemporaryDirectory() as scratch:
        home = args.home or os.path.join(scratch, 'home')
        if not os.path.isfile(os.path.join(home, 'parsing_parsenet.pth')):
            make_weights(home)
        official_cwd = os.path.join(scratch, 'official')  # GFPGANer reads facexlib's files from ./gfpgan/weights
        os.makedirs(os.path.join(official_cwd, 'gfpgan', 'weights'))
        for name in ('detection_Resnet50_Final.pth', 'parsing_parsenet.pth'):
            os.symlink(os.path.join(home, name), os.path.join(official_cwd, 'gfpgan', 'weights', name))
        cache = os.path.join(scratch, 'xla-cache')
        ours = dict(os.environ, GFPGAN_JAX_HOME=home, PYTHONPATH=ROOT, GFPGAN_JAX_COMPILE_CACHE=cache)
        cold = dict(ours, GFPGAN_JAX_COMPILE_CACHE='off')
        theirs = dict(os.environ, GFPGAN_JAX_HOME=home)
        output = os.path.join(scratch, 'out')
        timed('ours', PORTRAIT, output, ours, ROOT)  # converts the weights once and fills the cache
        seconds = {'gfpgan-jax, compilation cache warm': [], 'gfpgan-jax, cache off': [], 'official': []}
        for _ in range(args.repeats):
            seconds['gfpgan-jax, compilation cache warm'].append(timed('ours', PORTRAIT, output, ours, ROOT))
            seconds['official'].append(timed('official', PORTRAIT, output, theirs, official_cwd))
            seconds['gfpgan-jax, cache off'].append(timed('ours', PORTRAIT, output, cold, ROOT))
        cache_mib = sum(entry.stat().st_size for entry in os.scandir(cache)) / 2 ** 20

    result = dict(machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cpus',
                  date=time.strftime('%Y-%m-%d'), photo='grace_hopper.jpg 512x600, 2 faces', cache_mib=cache_mib,
                  rows=[dict(run=run, median_s=statistics.median(s), runs_s=s) for run, s in seconds.items()])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    print(f"one photo, process start to exit, {result['machine']}, {result['date']} (cache: {cache_mib:.0f} MiB)")
    for row in result['rows']:
        print(f"{row['run']:<36} median {row['median_s']:6.1f} s   runs {', '.join(f'{s:.1f}' for s in row['runs_s'])}")


if __name__ == '__main__':
    main()
