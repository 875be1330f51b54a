"""Restore a synthetic CelebA-Test-style set with a model and score it as the GFPGAN paper's Table 1 does.

    python -m gfpgan_jax.evaluation.synthesize --input celeba_hq_test/ --output celeba_test/
    python -m gfpgan_jax.evaluation.benchmark --set celeba_test/ -v 1.4 --json table1.json

Every face of SET/lq (aligned, as `infer.py --aligned` takes them; random decoder noise drawn from --seed) is
restored into --output (default SET/restored_<model>) as <name>.png. The restored faces and, as the paper's "Input"
row, the degraded faces themselves are then scored against SET/gt, and the table is printed last: one row each,
the columns LPIPS, FID, NIQE, Deg. (the ArcFace identity angle in degrees), PSNR and SSIM, with the paper's arrows
and decimals. The ground truth's FID statistics are computed once for both rows (and kept in --fid-stats when
given). --json writes each row's means and per-image values. Unreadable files are reported on one line each and
left out (exit 1); usage errors, missing weights that cannot be fetched included, exit with 2.
"""
import json
import os
import sys
import tempfile

from gfpgan_jax.cli.files import quiet_opencv, write_image
from gfpgan_jax.cli.infer import INTERRUPTED, restore_aligned
from gfpgan_jax.cli.report import Report, say
from gfpgan_jax.cli.usage import ArgumentParser, fraction, whole_number
from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.evaluation.folders import LOWER_IS_BETTER, METRICS, Evaluator, list_images, parse_metrics
from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import RELEASES, DownloadError
from gfpgan_jax.inference.fidelity import HELP as FIDELITY_HELP
from gfpgan_jax.inference.restorer import FaceRestorer
from gfpgan_jax.models.lpips import NETS

# Table 1's columns in the paper's order: metric -> (heading, decimals as the paper prints them).
COLUMNS = {'lpips': ('LPIPS', 4), 'fid': ('FID', 2), 'niqe': ('NIQE', 3), 'identity': ('Deg.', 2),
           'psnr': ('PSNR', 2), 'ssim': ('SSIM', 4)}
INPUT_ROW = 'Input'


class UsageError(ValueError):
    pass


def parse_args(argv):
    p = ArgumentParser(prog='python -m gfpgan_jax.evaluation.benchmark', description=__doc__)
    p.add_argument('--set', required=True, help='a set made by gfpgan_jax.evaluation.synthesize (gt/ and lq/)')
    p.add_argument('-v', '--version', default='1.4', choices=sorted(RELEASES), help='official GFPGAN release')
    p.add_argument('--model-path', help='a .pth checkpoint or a converted .safetensors; overrides --version')
    p.add_argument('--fidelity', type=fraction, default=1.0, help=FIDELITY_HELP)
    p.add_argument('--output', help='folder of the restored faces (default: SET/restored_<model>)')
    p.add_argument('--metrics', default=','.join(COLUMNS), help=f'comma list of {", ".join(METRICS)} (default: all)')
    p.add_argument('--json', help="write both rows' means and per-image values here")
    p.add_argument('--batch-size', type=whole_number(1), default=8, help='faces per compiled call')
    p.add_argument('--fid-stats', help="the ground truth's FID statistics (.npz): used when it exists, else "
                                       'computed and saved there')
    p.add_argument('--lpips-net', default='vgg', choices=NETS, help="LPIPS backbone (basicsr's script uses vgg)")
    p.add_argument('--seed', type=whole_number(-2 ** 63, 2 ** 63 - 1), default=0, help='seed of the random noise')
    return p.parse_args(argv)


def model_name(args):
    """(the model's row name, the name part of its default output folder)."""
    if args.model_path:
        return os.path.basename(args.model_path), os.path.splitext(os.path.basename(args.model_path))[0]
    return f'GFPGAN v{args.version}', f'v{args.version}'


def set_folders(args):
    """(SET/lq, SET/gt, the restored faces' folder), or a UsageError."""
    lq, gt = os.path.join(args.set, 'lq'), os.path.join(args.set, 'gt')
    for folder in (lq, gt):
        if not os.path.isdir(folder):
            raise UsageError(f'{folder}: not a folder (make the set with python -m gfpgan_jax.evaluation.synthesize)')
    output = args.output or os.path.join(args.set, f'restored_{model_name(args)[1]}')
    if os.path.realpath(output) in (os.path.realpath(lq), os.path.realpath(gt)):
        raise UsageError(f'--output {output}: that is the set\'s own {os.path.basename(os.path.realpath(output))}/')
    return lq, gt, output


class RestoredFolder:
    """Where `restore_aligned` puts its results: each restored face as FOLDER/<input's name>.png, written
    atomically, so it pairs with its ground truth by name."""

    def __init__(self, folder):
        self.folder = folder

    def write(self, path, cropped_faces, restored_faces):
        name = os.path.splitext(os.path.basename(path))[0]
        write_image(os.path.join(self.folder, f'{name}.png'), restored_faces[0])


def table(rows, metrics):
    """The paper's Table 1 layout: a row per (name, means), a column per metric in the paper's order."""
    columns = [metric for metric in COLUMNS if metric in metrics]
    first = max(len('Method'), *(len(name) for name, _ in rows))
    headings = [COLUMNS[metric][0] + ('↓' if metric in LOWER_IS_BETTER else '↑') for metric in columns]
    lines = [f'{"Method":<{first}}' + ''.join(f'{heading:>10}' for heading in headings)]
    for name, mean in rows:
        cells = [f'{mean[metric]:.{COLUMNS[metric][1]}f}' if metric in mean else '-' for metric in columns]
        lines.append(f'{name:<{first}}' + ''.join(f'{cell:>10}' for cell in cells))
    return '\n'.join(lines)


def prepare(args):
    """Everything before the first face: the checks, the metrics' networks and the model."""
    metrics = parse_metrics(args.metrics)
    lq, gt, output = set_folders(args)
    faces, clashes = list_images(lq)
    if not faces:
        raise UsageError(f'{lq}: no images in it')
    evaluator = Evaluator(metrics, lpips_net=args.lpips_net)
    options = dict(noise='random', seed=args.seed)
    if args.model_path:
        restorer = FaceRestorer.from_checkpoint(args.model_path, **options)
    else:
        restorer = FaceRestorer.from_pretrained(args.version, **options)
    os.makedirs(output, exist_ok=True)
    return metrics, (lq, gt, output), list(faces.values()), clashes, evaluator, restorer


def score(evaluator, folders, batch_size, fid_stats):
    """(the model's result, the input's result) of Evaluator.evaluate_folders; the ground truth's FID statistics
    are computed for the first and reloaded for the second."""
    lq, gt, output = folders
    with tempfile.TemporaryDirectory() as scratch:
        stats = fid_stats or os.path.join(scratch, 'gt_fid_stats.npz')
        return [evaluator.evaluate_folders(folder, gt, batch_size=batch_size, fid_stats=stats)
                for folder in (output, lq)]


def main(argv=None):
    try:
        args = parse_args(argv)
    except SystemExit as exit:  # a usage error (2) or --help (0), already printed
        return exit.code
    try:
        metrics, folders, faces, clashes, evaluator, restorer = prepare(args)
    except (UsageError, CheckpointError, DownloadError, ConversionError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable output folder or cache, an unreadable --model-path
        where = f'{error.filename}: ' if error.filename else ''
        print(f'error: {where}{error.strerror or error}', file=sys.stderr)
        return 2
    name = model_name(args)[0]
    report = Report('face', len(faces) + len(clashes))
    for line in clashes:
        report.error(line)
    try:
        with quiet_opencv():
            restore_aligned(restorer, faces, RestoredFolder(folders[2]), report,
                            min(args.batch_size, len(faces)), args.fidelity)
        say(report.last_line(folders[2]))
        restored, degraded = score(evaluator, folders, args.batch_size, args.fid_stats)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return INTERRUPTED
    except (ValueError, OSError) as error:  # --fid-stats not statistics, or not writable
        print(f'error: {error}', file=sys.stderr)
        return 2
    rows = [(INPUT_ROW, degraded), (name, restored)]
    if args.json:
        with atomic_write(args.json) as tmp, open(tmp, 'w') as f:
            json.dump({'set': args.set, 'restored': folders[2], 'metrics': list(metrics),
                       'rows': [{'name': row, 'mean': result['mean'], 'per_image': result['per_image']}
                                for row, result in rows]}, f, indent=1)
    print(table([(row, result['mean']) for row, result in rows], metrics))
    return 1 if report.failed or restored['problems'] or degraded['problems'] else 0


if __name__ == '__main__':
    sys.exit(main())
