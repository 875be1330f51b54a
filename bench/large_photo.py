"""Peak memory and time of infer.py on one large photo, whole process, as a person runs it.

The photo is the bundled Grace Hopper portrait stretched to --size (default 8000x6000, 48 MP) and saved as JPEG, with
its two faces (the portrait's and a made-up second one) where the portrait has them. Every network has random
weights laid out as the official files (GFPGAN v1.3, RetinaFace ResNet50, ParseNet) in a GFPGAN_JAX_HOME of their
own; the detector runs in full on what it is given (the photo, or the shrunk copy of a large one) and then reports the
known faces in that image's pixels, since random weights find none. On the CPU the background is resized, as the
official tool does there.

Each measurement is a fresh `python` process running infer.py's main; it reports its own peak resident memory
(getrusage), and the wall time is taken around the process. --code-root runs another checkout of the project (an
older commit, for the figures before a change), which needs only the same infer.py entry point.

    python bench/large_photo.py --size 8000x6000 --json large_photo.json
    python bench/large_photo.py --size 4000x3000 --code-root /tmp/old-checkout
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTRAIT = os.path.join(ROOT, 'examples', 'photos', 'grace_hopper.jpg')
# Eyes, nose and mouth corners of the portrait's face (and a made-up second one) in the 512 x 600 original.
LANDMARKS = np.float32([[[226, 197], [305, 195], [263, 245], [238, 276], [290, 275]],
                        [[80, 460], [124, 472], [98, 496], [80, 516], [114, 524]]])
PORTRAIT_WIDTH, PORTRAIT_HEIGHT = 512, 600


def make_weights(home):
    """Random-weight official files, as the tests make them (needs torch and the official packages)."""
    sys.path.insert(0, os.path.join(ROOT, 'tests'))
    import official
    import torch
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    from parity_utils import randomize
    os.makedirs(home, exist_ok=True)
    generator = official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=512, channel_multiplier=2, fix_decoder=False, input_is_latent=True, different_w=True, sft_half=True)
    torch.save({'params_ema': randomize(generator, seed=3).state_dict()}, os.path.join(home, 'GFPGANv1.3.pth'))
    torch.save(randomize(RetinaFace(network_name='resnet50', half=False, phase='test'), seed=1).state_dict(),
               os.path.join(home, 'detection_Resnet50_Final.pth'))
    torch.save(randomize(ParseNet(in_size=512, out_size=512, parsing_ch=19), seed=2).state_dict(),
               os.path.join(home, 'parsing_parsenet.pth'))


def known_faces(image, landmarks):
    """Detector rows (box, score, five points) of faces with `landmarks` in the portrait, in `image`'s pixels (the
    portrait stretched to its size)."""
    points = landmarks * [image.shape[1] / PORTRAIT_WIDTH, image.shape[0] / PORTRAIT_HEIGHT]
    margin = 0.3 * np.ptp(points[:, :, 0], axis=1, keepdims=True)
    boxes = np.concatenate([points.min(1) - margin, points.max(1) + margin, np.full((len(points), 1), 0.99)], 1)
    return np.concatenate([boxes, points.reshape(len(points), 10)], 1).astype(np.float32)


class KnownFaces:
    """Runs the real detector on what it is given, then reports the known faces in that image's pixels."""

    def __init__(self, detector, landmarks):
        self.detector = detector
        self.landmarks = landmarks

    def detect_faces(self, image, conf_threshold):
        self.detector.detect_faces(image, conf_threshold)
        return known_faces(image, self.landmarks)


def child(args):
    """One infer.py run in this process; prints its peak memory as JSON on the last line."""
    from gfpgan_jax.cli import infer
    from gfpgan_jax.inference.detection import FaceDetector
    detector = FaceDetector.from_checkpoint(os.path.join(os.environ['GFPGAN_JAX_HOME'],
                                                         'detection_Resnet50_Final.pth'))
    infer.FaceDetector.from_pretrained = classmethod(lambda cls, **kwargs: KnownFaces(detector, LANDMARKS))
    code = infer.main(['-i', args.photo, '-o', args.output, '-v', '1.3'])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps(dict(exit_code=code, peak_rss_gib=peak / 2 ** 30)))


def measure(code_root, photo, home, output, cache):
    env = dict(os.environ, GFPGAN_JAX_HOME=home, PYTHONPATH=code_root, JAX_PLATFORMS='cpu',
               GFPGAN_JAX_COMPILE_CACHE=os.path.join(home, 'xla-cache') if cache else 'off')
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', '--photo', photo, '--output', output],
                          env=env, cwd=code_root, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f'the run failed ({done.returncode}):\n{done.stderr[-3000:]}')
    return dict(json.loads(done.stdout.splitlines()[-1]), seconds=seconds, last_line=done.stdout.splitlines()[-2])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--size', default='8000x6000', help='photo size, WIDTHxHEIGHT')
    p.add_argument('--code-root', default=ROOT, help='the checkout whose infer.py runs')
    p.add_argument('--home', help='a folder for the random weights (made once, then reused)')
    p.add_argument('--warm', action='store_true', help='also a second run with the compilation cache warm')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--photo', help=argparse.SUPPRESS)
    p.add_argument('--output', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import cv2
    width, height = map(int, args.size.split('x'))
    with tempfile.TemporaryDirectory() as scratch:
        home = args.home or os.path.join(scratch, 'home')
        if not os.path.isfile(os.path.join(home, 'parsing_parsenet.pth')):
            make_weights(home)
        os.environ['GFPGAN_JAX_HOME'] = home
        from gfpgan_jax.files.releases import pretrained_path
        pretrained_path('1.3')  # converted once here, so that no run measures the conversion
        photos = os.path.join(scratch, 'photos')
        os.makedirs(photos)
        photo = os.path.join(photos, 'large.jpg')
        cv2.imwrite(photo, cv2.resize(cv2.imread(PORTRAIT), (width, height), interpolation=cv2.INTER_CUBIC))
        rows = [dict(run='compiling everything', **measure(args.code_root, photo, home,
                                                           os.path.join(scratch, 'out'), cache=False))]
        if args.warm:
            measure(args.code_root, photo, home, os.path.join(scratch, 'out'), cache=True)  # fills the cache
            rows.append(dict(run='compilation cache warm', **measure(args.code_root, photo, home,
                                                                     os.path.join(scratch, 'out'), cache=True)))
    result = dict(size=[width, height], megapixels=width * height / 1e6, code_root=args.code_root,
                  machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} cpus',
                  date=time.strftime('%Y-%m-%d'), rows=rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    print(f"{width}x{height} ({result['megapixels']:.0f} MP), {result['machine']}, {result['date']}, "
          f"code: {args.code_root}")
    for row in rows:
        print(f"{row['run']:<26} {row['seconds']:7.1f} s  peak {row['peak_rss_gib']:5.2f} GiB  ({row['last_line']})")


if __name__ == '__main__':
    main()
