"""`python -m gfpgan_jax.evaluate`: the GFPGAN paper's metrics over a folder of restored faces and their ground truth.

    python -m gfpgan_jax.evaluate --restored results/restored_faces --gt celeba_test/gt \\
        --metrics psnr,ssim,lpips,niqe,fid,identity --json metrics.json

Restored and ground-truth images pair by file name (`name.png` with `name.*`; `name_00.png`, as the official
inference names aligned faces, also pairs with `name.*`). PSNR, SSIM, LPIPS and the identity distance need the
pair; NIQE needs the restored image only; FID compares the restored set with the ground-truth set, or with the
statistics saved by an earlier run (--fid-stats). Files that cannot be read or paired are reported on one line
each and left out; the exit code is then 1. Usage errors exit with 2.
"""
import argparse
import json
import os
import sys

from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.evaluation.folders import LOWER_IS_BETTER, METRICS, PAIRED, Evaluator, parse_metrics
from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import DownloadError
from gfpgan_jax.models.lpips import NETS


class UsageError(ValueError):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m gfpgan_jax.evaluate', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--restored', required=True, help='folder of restored images')
    p.add_argument('--gt', help='folder of ground-truth images (needed by psnr, ssim, lpips, identity, and by fid '
                                'without --fid-stats)')
    p.add_argument('--metrics', default=','.join(METRICS), help=f'comma list of {", ".join(METRICS)} (default: all)')
    p.add_argument('--json', help='write the means and the per-image values here')
    p.add_argument('--test-y-channel', action='store_true', help='PSNR and SSIM on the Y channel (BT.601), as basicsr')
    p.add_argument('--crop-border', type=int, default=0, help='pixels left out at each edge by PSNR, SSIM and NIQE')
    p.add_argument('--lpips-net', default='vgg', choices=NETS, help='LPIPS backbone (basicsr\'s script uses vgg)')
    p.add_argument('--fid-stats', help='.npz of the reference set\'s FID statistics (pytorch-fid\'s layout): used '
                                       'when it exists, else computed from --gt and saved there')
    p.add_argument('--niqe-params', help='NIQE\'s niqe_pris_params.npz (default: basicsr\'s, fetched once)')
    p.add_argument('--batch-size', type=int, default=16, help='images per compiled call')
    return p.parse_args(argv)


def check_usage(args, metrics):
    for option, folder in (('--restored', args.restored), ('--gt', args.gt)):
        if folder is not None and not os.path.isdir(folder):
            raise UsageError(f'{option} {folder}: not a folder')
    if args.gt is None:
        paired = [metric for metric in metrics if metric in PAIRED]
        if paired:
            raise UsageError(f'{", ".join(paired)} need --gt')
        if 'fid' in metrics and not (args.fid_stats and os.path.isfile(args.fid_stats)):
            raise UsageError('fid needs --gt, or --fid-stats naming statistics saved before')
    if args.crop_border < 0:
        raise UsageError('--crop-border must not be negative')
    if args.batch_size < 1:
        raise UsageError('--batch-size must be at least 1')


def table(result, metrics):
    """The means, one metric a line, with the number of images each is over."""
    rows = result['per_image'].values()
    # FID is over every restored image that could be read.
    counts = {metric: len(rows) if metric == 'fid' else sum(metric in row for row in rows) for metric in metrics}
    lines = [f'{"metric":<10}{"mean":>12}{"images":>8}  better']
    for metric in metrics:
        value = result['mean'].get(metric)
        shown = f'{value:12.4f}' if value is not None else f'{"-":>12}'
        lines.append(f'{metric:<10}{shown}{counts[metric]:>8}  {"lower" if metric in LOWER_IS_BETTER else "higher"}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    try:
        metrics = parse_metrics(args.metrics)
        check_usage(args, metrics)
        evaluator = Evaluator(metrics, crop_border=args.crop_border, test_y_channel=args.test_y_channel,
                              niqe_params=args.niqe_params, lpips_net=args.lpips_net)
        result = evaluator.evaluate_folders(args.restored, args.gt, batch_size=args.batch_size,
                                            fid_stats=args.fid_stats)
    except (UsageError, CheckpointError, DownloadError, ConversionError, ValueError) as error:
        # ValueError: unknown metrics, --fid-stats or --niqe-params not what they should be.
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:  # an unreadable folder, an unwritable cache or --fid-stats path
        where = f'{error.filename}: ' if error.filename else ''
        print(f'error: {where}{error.strerror or error}', file=sys.stderr)
        return 2
    if args.json:
        with atomic_write(args.json) as tmp, open(tmp, 'w') as f:
            json.dump({'mean': result['mean'], 'per_image': result['per_image']}, f, indent=1)
    print(table(result, metrics))
    return 1 if result['problems'] else 0
