"""Every metric of the GFPGAN paper over a folder of restored faces and a folder of ground truths, paired by name.

>>> evaluator = Evaluator(('psnr', 'ssim', 'lpips', 'niqe', 'fid', 'identity'))   # fetches the weights it needs
>>> result = evaluator.evaluate_folders('results/restored_faces', 'celeba_test/gt')
>>> result['mean']['lpips'], result['per_image']['00000000_00.png']['psnr']

Images are read with OpenCV (as basicsr's scripts read them), turned to RGB, and batched by shape; a short last
batch is padded with copies of its last image, so few programs are compiled and no metric sees a blank image.
"""
import dataclasses
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from tqdm import tqdm

from gfpgan_jax.convert.pretrained import ARCFACE_RELEASE
from gfpgan_jax.evaluation.fid import FIDStatistics, InceptionFeatures, frechet_distance
from gfpgan_jax.evaluation.identity import IdentityDistance
from gfpgan_jax.evaluation.lpips import BACKBONE_RELEASES, HEAD_RELEASES, LPIPS
from gfpgan_jax.evaluation.niqe import niqe
from gfpgan_jax.evaluation.pixel import psnr, ssim
from gfpgan_jax.files.releases import fetch_all, missing_downloads
from gfpgan_jax.inference.batching import batch_shapes
from gfpgan_jax.models.inception import FEATURES

METRICS = ('psnr', 'ssim', 'lpips', 'niqe', 'fid', 'identity')
# Per pair of images; NIQE is per image; FID is one figure for the whole set.
PAIRED = ('psnr', 'ssim', 'lpips', 'identity')
LOWER_IS_BETTER = ('lpips', 'niqe', 'fid', 'identity')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# The official inference names a restored aligned face after its input with this face index appended.
FACE_INDEX_SUFFIX = '_00'


def parse_metrics(text):
    """'psnr,ssim' -> ('psnr', 'ssim'), or a ValueError naming the unknown ones."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(',') if name.strip()))
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f'unknown metrics {", ".join(unknown) or "(none given)"}; choose from {", ".join(METRICS)}')
    return names


def read_rgb(path):
    """uint8 RGB (h, w, 3) of an image file, or a ValueError naming it."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path}: not a readable image')
    return np.ascontiguousarray(image[..., ::-1])


def list_images(folder):
    """{stem: path} of the image files in `folder` (by extension), and a line for each stem seen twice."""
    images, clashes = {}, []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        stem, extension = os.path.splitext(name)
        if extension.lower() not in IMAGE_EXTENSIONS or not os.path.isfile(path):
            continue
        if stem in images:
            clashes.append(f'{path}: skipped, {os.path.basename(images[stem])} has the same name')
        else:
            images[stem] = path
    return images, clashes


def pair_by_name(restored, ground_truth):
    """[(restored path, ground-truth path or None)] for each restored image, matched by stem (a restored
    `name_00` also matches `name`, as the official inference names aligned faces), and the unmatched
    ground-truth paths."""
    pairs, used = [], set()
    for stem, path in restored.items():
        match = stem if stem in ground_truth else None
        if match is None and stem.endswith(FACE_INDEX_SUFFIX) and stem[:-len(FACE_INDEX_SUFFIX)] in ground_truth:
            match = stem[:-len(FACE_INDEX_SUFFIX)]
        pairs.append((path, ground_truth.get(match)))
        used.add(match)
    return pairs, [path for stem, path in ground_truth.items() if stem not in used]


def _pad(images, size):
    """`images` (n, ...) with copies of the last one appended up to `size`."""
    return np.concatenate([images, np.repeat(images[-1:], size - len(images), axis=0)])


def _padded_size(count, batch_size):
    """A full batch stays as it is; a short one is padded to a power of two, so few shapes are compiled."""
    return count if count >= batch_size else batch_shapes(count, batch_size)[0]


def _read_chunk(pairs):
    """(name, restored, ground truth or None) for each readable restored image, and the problems: a ground truth
    that cannot be read, or whose size differs, leaves its restored image unpaired."""
    items, problems = [], []
    for restored_path, gt_path in pairs:
        try:
            restored = read_rgb(restored_path)
        except ValueError as error:
            problems.append(str(error))
            continue
        gt = None
        if gt_path is not None:
            try:
                gt = read_rgb(gt_path)
            except ValueError as error:
                problems.append(str(error))
        if gt is not None and gt.shape != restored.shape:
            problems.append(f'{restored_path}: {restored.shape[1]}x{restored.shape[0]}, but its ground truth '
                            f'{gt_path} is {gt.shape[1]}x{gt.shape[0]}; not compared')
            gt = None
        items.append((os.path.basename(restored_path), restored, gt))
    return items, problems


@dataclasses.dataclass
class Evaluator:
    """The chosen metrics with their networks; those not given are built from the official weights (fetched on
    first use). `crop_border` and `test_y_channel` are basicsr's options for PSNR, SSIM (and crop_border for NIQE);
    `niqe_params` a niqe_pris_params.npz (default: the official one)."""
    metrics: tuple = METRICS
    crop_border: int = 0
    test_y_channel: bool = False
    lpips: LPIPS | None = None
    inception: InceptionFeatures | None = None
    identity: IdentityDistance | None = None
    niqe_params: str | None = None
    lpips_net: str = 'vgg'

    def __post_init__(self):
        self.metrics = tuple(self.metrics)
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f'unknown metrics {sorted(unknown)}; choose from {", ".join(METRICS)}')
        if self.lpips_net not in BACKBONE_RELEASES:
            raise ValueError(f'lpips_net must be one of {", ".join(BACKBONE_RELEASES)}, not {self.lpips_net!r}')
        # Every missing file fetched (or reported) together, before any network is built.
        fetch_all(missing_downloads(helpers=self.official_files()))
        if 'lpips' in self.metrics and self.lpips is None:
            self.lpips = LPIPS.from_pretrained(self.lpips_net)
        if 'fid' in self.metrics and self.inception is None:
            self.inception = InceptionFeatures.from_pretrained()
        if 'identity' in self.metrics and self.identity is None:
            self.identity = IdentityDistance.from_pretrained()

    def official_files(self):
        """The keys of releases.HELPER_WEIGHTS of the files the chosen metrics load."""
        wanted = {'lpips': [BACKBONE_RELEASES[self.lpips_net], HEAD_RELEASES[self.lpips_net]] if not self.lpips else [],
                  'fid': [InceptionFeatures.RELEASE] if not self.inception else [],
                  'identity': [ARCFACE_RELEASE] if not self.identity else [],
                  'niqe': ['niqe_pris_params'] if not self.niqe_params else []}
        return [name for metric in self.metrics for name in wanted.get(metric, [])]

    def _dispatch(self, metric, restored, gt):
        """One metric's (b,) values, possibly still being computed on the device."""
        if metric == 'psnr':
            return psnr(restored, gt, self.crop_border, self.test_y_channel)
        if metric == 'ssim':
            return ssim(restored, gt, self.crop_border, self.test_y_channel)
        if metric == 'lpips':
            return self.lpips(restored, gt)
        if metric == 'identity':
            return self.identity(restored, gt)
        return niqe(restored, self.crop_border, self.niqe_params)

    def _wanted(self, with_gt):
        # NIQE last: its fits run on the host while the device computes the others.
        return [m for m in PAIRED + ('niqe',) if m in self.metrics and (with_gt or m not in PAIRED)]

    def per_image(self, restored, gt=None):
        """{metric: (b,) float64 values} of a batch of restored RGB images (b, h, w, 3) in [0, 255] against `gt`
        (the same shape, or None for the no-reference metrics only); FID, a set's figure, is not among them."""
        values = {metric: self._dispatch(metric, restored, gt) for metric in self._wanted(gt is not None)}
        return {metric: np.asarray(value, np.float64) for metric, value in values.items()}

    def evaluate_folders(self, restored_dir, gt_dir=None, batch_size=16, fid_stats=None, progress=True,
                         report=None):
        """{'mean': {metric: value}, 'per_image': {file name: {metric: value}}, 'problems': [lines]} over the
        images of `restored_dir`, paired by name with those of `gt_dir`.

        FID compares every readable restored image with every readable ground truth, or with the statistics in
        `fid_stats` (an .npz as pytorch-fid saves them) when that file exists; when it does not, the ground
        truth's statistics are computed and saved there. Unreadable and unmatched files are reported through
        `report` (one line each; default: stderr) and left out.
        """
        report = report or (lambda line: tqdm.write(line, file=sys.stderr))
        problems = []

        def note(line):
            if line not in problems:  # a ground truth that cannot be read is met again by FID
                problems.append(line)
                report(line)

        restored, clashes = list_images(restored_dir)
        ground_truth, gt_clashes = list_images(gt_dir) if gt_dir is not None else ({}, [])
        for line in clashes + gt_clashes:
            note(line)
        pairs, unmatched_gt = pair_by_name(restored, ground_truth)
        if gt_dir is not None:
            for restored_path, gt_path in pairs:
                if gt_path is None:
                    note(f'{restored_path}: no ground truth of that name in {gt_dir}')
            for path in unmatched_gt:
                note(f'{path}: no restored image of that name in {restored_dir}')

        per_image, restored_features = {}, []
        chunks = [pairs[i:i + batch_size] for i in range(0, len(pairs), batch_size)]
        with ThreadPoolExecutor(2) as pool, tqdm(total=len(pairs), unit='image', desc='evaluating',
                                                  disable=not progress) as bar:
            # The next chunk is decoded while the device works on this one.
            reading = pool.submit(_read_chunk, chunks[0]) if chunks else None
            for index in range(len(chunks)):
                items, read_problems = reading.result()
                if index + 1 < len(chunks):
                    reading = pool.submit(_read_chunk, chunks[index + 1])
                for line in read_problems:
                    note(line)
                for group in _groups(items):
                    per_image.update(self._evaluate_group(group, batch_size, note))
                    if 'fid' in self.metrics:
                        restored_features.append(self._features(np.stack([item[1] for item in group]), batch_size))
                bar.update(len(chunks[index]))

        mean = {}
        for metric in self.metrics:
            scores = [row[metric] for row in per_image.values() if metric in row]
            if scores:
                mean[metric] = float(np.mean(scores))
        if 'fid' in self.metrics:
            fid = self._fid(restored_features, list(ground_truth.values()), fid_stats, batch_size, progress, note)
            if fid is not None:
                mean['fid'] = fid
        return {'mean': mean, 'per_image': per_image, 'problems': problems}

    def _evaluate_group(self, group, batch_size, note):
        """{name: {metric: value}} of items (name, restored, ground truth or None) that share their shapes."""
        restored = _pad(np.stack([item[1] for item in group]), _padded_size(len(group), batch_size))
        gt = _pad(np.stack([item[2] for item in group]), len(restored)) if group[0][2] is not None else None
        values = {}
        for metric in self._wanted(gt is not None):
            try:
                values[metric] = self._dispatch(metric, restored, gt)
            except ValueError as error:  # images too small for this metric: say so, keep the others
                note(f'{metric}: left out for {", ".join(name for name, _, _ in group)}: {error}')
        rows = {name: {} for name, _, _ in group}
        for metric, column in values.items():
            for (name, row), value in zip(rows.items(), np.asarray(column, np.float64)):
                if np.isnan(value):  # NIQE of a flat image
                    note(f'{name}: {metric} is undefined for this image; left out')
                else:
                    row[metric] = float(value)
        return rows

    def _features(self, images, batch_size):
        """(n, 2048) FID features of same-shape images (n, h, w, 3)."""
        return np.asarray(self.inception(_pad(images, _padded_size(len(images), batch_size))))[:len(images)]

    def _fid(self, restored_features, gt_paths, fid_stats, batch_size, progress, note):
        """The FID of the restored set against the saved statistics or the ground-truth images, else None."""
        if fid_stats is not None and os.path.isfile(fid_stats):
            reference = FIDStatistics.load(fid_stats)
        elif not gt_paths:
            note('fid: needs ground-truth images (--gt) or an existing statistics file (--fid-stats)')
            return None
        else:
            features = []
            chunks = [[(path, None) for path in gt_paths[i:i + batch_size]]
                      for i in range(0, len(gt_paths), batch_size)]
            for items, problems in map(_read_chunk, tqdm(chunks, desc='reference set', unit='batch',
                                                         disable=not progress)):
                for line in problems:
                    note(line)
                features += [self._features(np.stack([item[1] for item in group]), batch_size)
                             for group in _groups(items)]
            try:
                reference = FIDStatistics.of(np.concatenate(features) if features else np.zeros((0, FEATURES)))
            except ValueError as error:
                note(f'fid: the reference set: {error}')
                return None
            if fid_stats is not None:
                reference.save(fid_stats)
        try:
            restored = FIDStatistics.of(np.concatenate(restored_features) if restored_features
                                        else np.zeros((0, FEATURES)))
        except ValueError as error:
            note(f'fid: the restored set: {error}')
            return None
        return frechet_distance(restored, reference)


def _groups(items):
    """`items` split into runs of the same restored and ground-truth shapes (usually one run)."""
    groups = {}
    for item in items:
        key = (item[1].shape, None if item[2] is None else item[2].shape)
        groups.setdefault(key, []).append(item)
    return list(groups.values())
