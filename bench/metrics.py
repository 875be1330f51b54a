"""Evaluation-metric throughput: gfpgan-jax against the implementations it matches, in one run.

PSNR, SSIM and NIQE against basicsr 1.4.2's numpy functions (one image per call, as its scripts run them), LPIPS
against the lpips 0.1.4 package, FID's InceptionV3 features against pytorch-fid 0.3.0's, and the identity distance
against gfpgan 1.3.8's ArcFace with GFPGAN's grey resize. The networks have random weights (nothing is
downloaded), the same on both sides. Every figure is end to end, from a host batch of uint8 RGB 512x512 faces (the
paper's size) to values on the host; the median of --repeats batches after a warm-up (compilation for JAX),
torch on the same device (CUDA when there is one). `--frechet` also times the 2048-d Frechet distance (host
scipy on both sides; minutes on a small CPU).

    python bench/metrics.py --batch-size 16 --repeats 5 --json bench/metrics.json
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

import jax
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import official  # noqa: E402,F401  (the official stack, importable on any torch)
import lpips as official_lpips  # noqa: E402
from basicsr.metrics.niqe import calculate_niqe  # noqa: E402
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim  # noqa: E402
from gfpgan.archs.arcface_arch import ResNetArcFace  # noqa: E402
from parity_utils import randomize, state_dict_numpy  # noqa: E402
from timing import seconds_of  # noqa: E402 (bench/)
from pytorch_fid.fid_score import calculate_frechet_distance  # noqa: E402
from test_evaluation_metrics import (LPIPS_HEADS, NIQE_PARAMS, blurred, photos, random_fid_inception,  # noqa: E402
                                     torchvision_layout)

from gfpgan_jax.evaluation import (LPIPS, FIDStatistics, IdentityDistance, InceptionFeatures,  # noqa: E402
                                   frechet_distance, niqe, psnr, ssim)
from gfpgan_jax.files.pth import load_pth  # noqa: E402

SIZE = 512


def row(metric, implementation, batch, fn, repeats):
    first, seconds = seconds_of(fn, repeats)  # the first call warms up (compiles, for JAX)
    median = statistics.median(seconds)
    result = dict(metric=metric, implementation=implementation, batch=batch, images_per_s=batch / median,
                  ms_per_image=1e3 * median / batch, first_call_s=first)
    print(result, flush=True)
    return result


def faces(batch):
    """`batch` distinct 512x512 faces (the two photos, mirrored, with a little noise) and a blurred copy each."""
    base = photos(SIZE)
    base = np.concatenate([base, base[:, :, ::-1]])
    rng = np.random.default_rng(0)
    gt = np.stack([np.clip(base[i % len(base)] + rng.normal(0, 3, base.shape[1:]), 0, 255).astype(np.uint8)
                   for i in range(batch)])
    return blurred(gt, 2), gt


def torch_input(images, device):
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--metrics', default='psnr,ssim,niqe,lpips,fid,identity')
    p.add_argument('--frechet', action='store_true', help='also time the 2048-d Frechet distance')
    p.add_argument('--json', help='write every figure here')
    args = p.parse_args()

    # fp32 means fp32 on both sides (no TF32), as in bench/inference.py.
    jax.config.update('jax_default_matmul_precision', 'highest')
    torch.set_num_threads(os.cpu_count())  # tests/official.py pins one thread for parallel test workers
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    batch, repeats = args.batch_size, args.repeats
    restored, gt = faces(batch)
    wanted = args.metrics.split(',')
    rows = []

    def timed_torch(fn):
        def call():
            with torch.no_grad():
                out = fn().cpu().numpy()
            sync()
            return out
        return call

    if 'psnr' in wanted:
        rows.append(row('psnr', 'gfpgan-jax', batch, lambda: np.asarray(psnr(restored, gt)), repeats))
        rows.append(row('psnr', 'basicsr (numpy)', batch,
                        lambda: [calculate_psnr(a[..., ::-1], b[..., ::-1], 0) for a, b in zip(restored, gt)], repeats))
    if 'ssim' in wanted:
        rows.append(row('ssim', 'gfpgan-jax', batch, lambda: np.asarray(ssim(restored, gt)), repeats))
        rows.append(row('ssim', 'basicsr (numpy, cv2)', batch,
                        lambda: [calculate_ssim(a[..., ::-1], b[..., ::-1], 0) for a, b in zip(restored, gt)], repeats))
    if 'niqe' in wanted:
        rows.append(row('niqe', 'gfpgan-jax', batch, lambda: niqe(restored, params=NIQE_PARAMS), repeats))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            rows.append(row('niqe', 'basicsr (numpy, scipy)', batch,
                            lambda: [calculate_niqe(a[..., ::-1], 0) for a in restored], repeats))
    if 'lpips' in wanted:
        reference = official_lpips.LPIPS(pretrained=True, net='vgg', pnet_rand=True, verbose=False)
        ours = LPIPS.from_state_dicts(torchvision_layout(reference), load_pth(os.path.join(LPIPS_HEADS, 'vgg.pth')),
                                      'vgg')
        reference.to(device)
        rows.append(row('lpips (vgg)', 'gfpgan-jax', batch, lambda: np.asarray(ours(restored, gt)), repeats))
        rows.append(row('lpips (vgg)', 'lpips package (torch)', batch, timed_torch(
            lambda: reference(torch_input(restored, device) * 2 - 1, torch_input(gt, device) * 2 - 1)), repeats))
    if 'fid' in wanted:
        reference, state = random_fid_inception()
        ours = InceptionFeatures.from_state_dict(state)
        reference.to(device)
        rows.append(row('fid features', 'gfpgan-jax', batch, lambda: np.asarray(ours(restored)), repeats))
        rows.append(row('fid features', 'pytorch-fid (torch)', batch,
                        timed_torch(lambda: reference(torch_input(restored, device))[0]), repeats))
        if args.frechet:
            rng = np.random.default_rng(0)
            first, second = (FIDStatistics.of(rng.normal(size=(4096, 2048)).astype(np.float32)) for _ in range(2))
            rows.append(row('frechet distance 2048-d', 'gfpgan-jax (scipy)', 1,
                            lambda: frechet_distance(first, second), 1))
            rows.append(row('frechet distance 2048-d', 'pytorch-fid (scipy)', 1, lambda: calculate_frechet_distance(
                first.mu, first.sigma, second.mu, second.sigma), 1))
    if 'identity' in wanted:
        reference = randomize(ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False))
        ours = IdentityDistance.from_state_dict(state_dict_numpy(reference))
        reference.to(device)

        def official_angles():
            both = torch_input(np.concatenate([restored, gt]), device) * 2 - 1
            grey = (0.2989 * both[:, 0] + 0.5870 * both[:, 1] + 0.1140 * both[:, 2]).unsqueeze(1)
            embeddings = reference(F.interpolate(grey, (128, 128), mode='bilinear', align_corners=False))
            return torch.rad2deg(torch.arccos(F.cosine_similarity(*embeddings.chunk(2)).clamp(-1, 1)))

        rows.append(row('identity', 'gfpgan-jax', batch, lambda: np.asarray(ours(restored, gt)), repeats))
        rows.append(row('identity', 'gfpgan ArcFace (torch)', batch, timed_torch(official_angles), repeats))

    result = dict(device=str(jax.devices()[0].device_kind), torch_device=str(device), host=platform.node(),
                  cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), jax=jax.__version__,
                  torch=torch.__version__, date=time.strftime('%Y-%m-%d'), image_size=SIZE, rows=rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    print(f"\n{result['device']} ({result['cpu_count']} cpus), jax {result['jax']}, torch {result['torch']} on "
          f"{device}, {result['date']}; {SIZE}x{SIZE} faces")
    print(f"{'metric':<26}{'implementation':<26}{'batch':>6}{'images/s':>10}{'ms/image':>10}{'first call s':>14}")
    for r in rows:
        print(f"{r['metric']:<26}{r['implementation']:<26}{r['batch']:>6}{r['images_per_s']:>10.2f}"
              f"{r['ms_per_image']:>10.1f}{r['first_call_s']:>14.1f}")


if __name__ == '__main__':
    main()
