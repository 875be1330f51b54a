"""Whole-photo restoration speed: gfpgan-jax's ImageRestorer against the official GFPGANer.enhance, in one run.

Both sides get the same random weights for every network (GFPGAN v1.4 layout, RetinaFace ResNet50, ParseNet and,
on a GPU, Real-ESRGAN x2 as the official tool builds them) and restore the same photo: matplotlib's Grace Hopper
portrait, 512 x 600, with two faces. Random detector weights find no faces, so on both sides the detector runs in
full and then reports the two faces' known landmarks instead of its own findings. On the CPU the background is
resized (the official tool skips Real-ESRGAN there); on a GPU it is upsampled in tiles of 400.

    python bench/pipeline.py --repeats 3 --json pipeline.json
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import cv2
import jax
import jax.numpy as jnp
import matplotlib.cbook
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import official  # noqa: E402  (the official stack, importable on any torch)
from parity_utils import (FixedDetector, calibrate_batch_norms, detection_rows, randomize,  # noqa: E402
                          state_dict_numpy)

from gfpgan_jax.inference.alignment import align_faces  # noqa: E402
from gfpgan_jax.inference.background import BackgroundUpsampler  # noqa: E402
from gfpgan_jax.inference.detection import FaceDetector  # noqa: E402
from gfpgan_jax.inference.parsing import FaceParser  # noqa: E402
from gfpgan_jax.inference.pipeline import ImageRestorer  # noqa: E402
from timing import seconds_of  # noqa: E402 (bench/)
from gfpgan_jax.inference.restorer import FaceRestorer  # noqa: E402

# Grace Hopper's face (eyes, nose, mouth corners) and a made-up second one, in the full-size portrait.
LANDMARKS = np.float32([[[226, 197], [305, 195], [263, 245], [238, 276], [290, 275]],
                        [[80, 460], [124, 472], [98, 496], [80, 516], [114, 524]]])


def timed(fn, repeats):
    first, seconds = seconds_of(fn, repeats)
    return dict(first_s=first, median_s=statistics.median(seconds), p90_s=float(np.percentile(seconds, 90)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--json', help='write every figure here')
    args = p.parse_args()

    torch.set_num_threads(os.cpu_count())  # tests/official.py pins one thread for parallel test workers
    on_gpu = torch.cuda.is_available()
    device = torch.device('cuda' if on_gpu else 'cpu')
    import gfpgan.utils
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    from facexlib.utils import face_restoration_helper
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer

    with matplotlib.cbook.get_sample_data('grace_hopper.jpg') as f:
        photo = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    face = align_faces(photo, LANDMARKS[:1])[0][0]
    known_faces = detection_rows(LANDMARKS, margin=30)
    detector = randomize(RetinaFace(network_name='resnet50', half=False, phase='test'), seed=1)
    parser = calibrate_batch_norms(randomize(ParseNet(in_size=512, out_size=512, parsing_ch=19), seed=2),
                                   torch.from_numpy(face[None, ::4, ::4, ::-1].transpose(0, 3, 1, 2) / 127.5 - 1)
                                   .float())
    generator = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=512, channel_multiplier=2, fix_decoder=False, input_is_latent=True, different_w=True,
        sft_half=True), seed=3)
    upsampler = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2).eval()

    with tempfile.TemporaryDirectory() as folder:
        gfpgan_path, upsampler_path = os.path.join(folder, 'gfpgan.pth'), os.path.join(folder, 'realesrgan.pth')
        torch.save({'params_ema': generator.state_dict()}, gfpgan_path)
        torch.save({'params_ema': upsampler.state_dict()}, upsampler_path)

        # The detectors run in full, then report the known faces.
        face_restoration_helper.init_detection_model = lambda *a, **k: FixedDetector(known_faces,
                                                                                      detector.to(device))
        face_restoration_helper.init_parsing_model = lambda *a, **k: parser.to(device)
        background = (RealESRGANer(scale=2, model_path=upsampler_path, model=upsampler, tile=400, tile_pad=10,
                                   pre_pad=0, half=True, device=device) if on_gpu else None)
        theirs = gfpgan.utils.GFPGANer(model_path=gfpgan_path, upscale=2, arch='clean', channel_multiplier=2,
                                       bg_upsampler=background, device=device)
        ours = ImageRestorer(
            FaceRestorer.from_checkpoint(gfpgan_path),
            FixedDetector(known_faces, FaceDetector.from_state_dict(state_dict_numpy(detector.cpu()))),
            FaceParser.from_state_dict(state_dict_numpy(parser.cpu())),
            # bf16 where the official runs Real-ESRGAN in fp16, as infer.py does
            BackgroundUpsampler.from_checkpoint(upsampler_path, dtype=jnp.bfloat16) if on_gpu else None, upscale=2)
        detector.to(device)
        parser.to(device)

        sync = torch.cuda.synchronize if on_gpu else (lambda: None)
        rows = [dict(name='gfpgan-jax fp32', **timed(lambda: ours.enhance(photo), args.repeats)),
                dict(name='official fp32', **timed(lambda: (theirs.enhance(photo), sync()), args.repeats))]

    result = dict(device=str(jax.devices()[0].device_kind), cpu_count=os.cpu_count(), jax=jax.__version__,
                  torch=torch.__version__, date=time.strftime('%Y-%m-%d'), photo=list(photo.shape), faces=2,
                  background='Real-ESRGAN x2, tiles of 400' if on_gpu else 'resized', rows=rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    print(f"\n{result['device']} ({result['cpu_count']} cpus), jax {result['jax']}, torch {result['torch']}, "
          f"{result['date']}: one {photo.shape[1]}x{photo.shape[0]} photo, 2 faces, background "
          f"{result['background']}")
    print(f"{'implementation':<20}{'s/photo':>10}{'p90 s':>8}{'first call s':>14}")
    for r in rows:
        print(f"{r['name']:<20}{r['median_s']:>10.2f}{r['p90_s']:>8.2f}{r['first_s']:>14.2f}")


if __name__ == '__main__':
    main()
