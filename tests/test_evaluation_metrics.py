"""Parity of each evaluation metric with the implementation the field reports with, on real photos (scikit-image's
astronaut, matplotlib's Grace Hopper) and synthetic images.

References and tolerances (fp32 on our side, CPU, highest matmul precision):
- PSNR, SSIM: basicsr 1.4.2's calculate_psnr / calculate_ssim (float64, BGR inputs): 1e-4 dB, 2e-6.
- NIQE: basicsr's calculate_niqe with its niqe_pris_params.npz: 2e-3 relative. basicsr's own figure moves by up to
  2.4e-3 when its half-size image is perturbed by one float32 ulp (its local variances are float32 differences of
  values near 255^2), so it is not defined more closely than that; see test_niqe_reference_is_this_sensitive.
- resizes: basicsr's MATLAB-like imresize and torch's bilinear F.interpolate: 1e-6.
- LPIPS: lpips 0.1.4, LPIPS(pretrained=True, pnet_rand=True) (random backbones, the shipped linear heads): 1e-6.
- FID: pytorch-fid 0.3.0's InceptionV3 (random weights) features 1e-4 x max(1, their largest); the distance of
  the same features as pytorch_fid.fid_score.calculate_frechet_distance: 1e-6 relative (in 32 and 64 dimensions:
  scipy's 2048-d sqrtm takes minutes on two cores).
- identity: gfpgan 1.3.8's ResNetArcFace (random weights) embeddings 1e-4, angles 1e-4 degrees.
"""
import functools
import os
import re
import warnings

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

import official  # noqa: F401  (mends the official packages' imports; before torchvision and basicsr)
import lpips as official_lpips
import pytorch_fid.inception as official_inception
import torchvision
from basicsr.metrics import niqe as official_niqe
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from basicsr.utils.matlab_functions import imresize as official_imresize
from gfpgan.archs.arcface_arch import ResNetArcFace
from pytorch_fid.fid_score import calculate_frechet_distance

from gfpgan_jax.evaluation import (FIDStatistics, IdentityDistance, InceptionFeatures, LPIPS, frechet_distance, niqe,
                                   psnr, ssim)
from gfpgan_jax.evaluation.resize import imresize, resize_bilinear
from gfpgan_jax.files.pth import load_pth
from parity_utils import calibrate_batch_norms, max_abs, nchw, nhwc, randomize, state_dict_numpy

PSNR_TOL = 1e-4
SSIM_TOL = 2e-6
NIQE_RTOL = 2e-3
RESIZE_TOL = 1e-6
LPIPS_TOL = 1e-6
NET_TOL = 1e-4
FID_RTOL = 1e-6
DEGREES_TOL = 1e-4
NIQE_PARAMS = os.path.join(os.path.dirname(official_niqe.__file__), 'niqe_pris_params.npz')
LPIPS_HEADS = os.path.join(os.path.dirname(official_lpips.__file__), 'weights', 'v0.1')


def photos(size=256):
    """The two real photos, size x size crops around the faces, uint8 RGB (2, size, size, 3)."""
    astronaut = skimage.data.astronaut()[:400, 50:450]
    grace = cv2.imread(matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))[..., ::-1]
    grace = grace[20:420, 60:460]
    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in (astronaut, grace)])


def blurred(images, sigma):
    return np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in images])


def noisy(images, seed=0):
    noise = np.random.default_rng(seed).normal(0, 8, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def faces():
    return photos()


def bgr(image):
    return np.ascontiguousarray(image[..., ::-1])


@pytest.mark.parametrize('test_y_channel', [False, True])
@pytest.mark.parametrize('crop_border', [0, 4])
@pytest.mark.parametrize('degradation', ['blur', 'noise'])
def test_psnr_ssim_match_basicsr(faces, test_y_channel, crop_border, degradation):
    degraded = blurred(faces, 2) if degradation == 'blur' else noisy(faces)
    options = dict(crop_border=crop_border, test_y_channel=test_y_channel)
    for ours_images, ours_references in [(degraded, faces), (degraded.astype(np.float32), faces.astype(np.float64))]:
        expected_psnr = [calculate_psnr(bgr(a), bgr(b), **options) for a, b in zip(ours_images, ours_references)]
        expected_ssim = [calculate_ssim(bgr(a), bgr(b), **options) for a, b in zip(ours_images, ours_references)]
        assert max_abs(psnr(ours_images, ours_references, **options), expected_psnr) < PSNR_TOL
        assert max_abs(ssim(ours_images, ours_references, **options), expected_ssim) < SSIM_TOL


def test_psnr_ssim_single_channel_and_equal_images():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (3, 37, 53, 1), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert max_abs(psnr(a, b), [calculate_psnr(x[..., 0], y[..., 0], 0) for x, y in zip(a, b)]) < PSNR_TOL
    assert max_abs(ssim(a, b, 2), [calculate_ssim(x[..., 0], y[..., 0], 2) for x, y in zip(a, b)]) < SSIM_TOL
    assert np.all(np.isinf(psnr(a, a)))
    assert np.allclose(ssim(a, a), 1)


def test_pixel_metrics_refuse_bad_input():
    a = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match='differ in shape'):
        psnr(a, a[:1])
    with pytest.raises(ValueError, match='expected a batch'):
        ssim(a[0], a[0])
    with pytest.raises(ValueError, match='crop_border 16 leaves nothing'):
        psnr(a, a, crop_border=16)
    with pytest.raises(ValueError, match='at least 11x11'):
        ssim(a, a, crop_border=12)


@pytest.mark.parametrize('shape, scale', [((96, 96), 0.5), ((191, 250), 0.5), ((64, 80), 0.3), ((40, 50), 2.0)])
def test_imresize_matches_basicsr(shape, scale):
    image = np.random.default_rng(2).uniform(0, 1, shape + (3,)).astype(np.float32)
    assert max_abs(imresize(image[None], scale)[0], official_imresize(image, scale)) < RESIZE_TOL


@pytest.mark.parametrize('shape, size', [((512, 512), (299, 299)), ((64, 80), (299, 299)), ((512, 512), (128, 128)),
                                         ((100, 90), (128, 128))])
def test_bilinear_resize_matches_torch(shape, size):
    images = np.random.default_rng(3).uniform(0, 1, (2,) + shape + (3,)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(nchw(images)), size=size, mode='bilinear', align_corners=False)
    assert max_abs(resize_bilinear(images, size), nhwc(expected)) < RESIZE_TOL


def official_niqe_values(images):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # basicsr's nan means of blocks without negative values
        return np.array([official_niqe.calculate_niqe(bgr(image), 0) for image in images])


@pytest.mark.parametrize('crop', ['square', 'wide'])
def test_niqe_matches_basicsr(faces, crop):
    # 256x256 keeps 2x2 blocks of 96; 200x300 keeps 2x3 and crops the rest away, as basicsr does.
    images = faces if crop == 'square' else photos(300)[:, 50:250]
    for batch in (images, blurred(images, 2), noisy(images)):
        expected = official_niqe_values(batch)
        np.testing.assert_allclose(niqe(batch, params=NIQE_PARAMS), expected, rtol=NIQE_RTOL)


def test_niqe_reference_is_this_sensitive(monkeypatch):
    """On a blurred 512x512 photo basicsr's NIQE moves by more than 1e-3 relative when its half-size image moves by
    one float32 ulp; ours stays within NIQE_RTOL of the unmoved figure."""
    image = blurred(skimage.data.astronaut()[None], 2)
    expected = official_niqe_values(image)[0]
    np.testing.assert_allclose(niqe(image, params=NIQE_PARAMS), [expected], rtol=NIQE_RTOL)
    resize = official_niqe.imresize

    def nudged(img, scale, antialiasing=True):
        out = resize(img, scale, antialiasing)
        return out * (1 + np.float32(6e-8) * np.sign(np.sin(np.arange(out.size)).reshape(out.shape)))

    monkeypatch.setattr(official_niqe, 'imresize', nudged)
    assert abs(official_niqe_values(image)[0] - expected) / expected > 1e-3


def test_niqe_needs_two_blocks():
    with pytest.raises(ValueError, match='two 96x96 blocks'):
        niqe(np.zeros((1, 150, 150, 3), np.uint8), params=NIQE_PARAMS)
    with pytest.raises(ValueError, match='two 96x96 blocks'):
        niqe(np.zeros((1, 200, 200, 3), np.uint8), crop_border=10, params=NIQE_PARAMS)
    # A flat image has no fit (basicsr fails in its pseudo-inverse): NaN, without disturbing its batch.
    batch = np.stack([np.full((192, 192, 3), 128, np.uint8), photos(192)[0]])
    values = niqe(batch, params=NIQE_PARAMS)
    assert np.isnan(values[0])
    np.testing.assert_allclose(values[1], official_niqe_values(batch[1:])[0], rtol=NIQE_RTOL)


def torchvision_layout(lpips_module):
    """torchvision's `features.N.*` backbone state dict of an lpips.LPIPS module's (random) backbone."""
    return {re.sub(r'^net\.slice\d+\.', 'features.', key): value
            for key, value in state_dict_numpy(lpips_module).items() if key.startswith('net.')}


@pytest.mark.parametrize('net', ['alex', 'vgg'])
def test_lpips_matches_the_lpips_package(faces, net, tmp_path):
    reference = official_lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    backbone = tmp_path / 'backbone.pth'
    torch.save({key: torch.from_numpy(value) for key, value in torchvision_layout(reference).items()}, backbone)
    ours = LPIPS.from_checkpoints(backbone, os.path.join(LPIPS_HEADS, f'{net}.pth'), net)
    small = np.stack([cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA) for face in faces])
    for degraded in (blurred(small, 1.5), noisy(small)):
        with torch.no_grad():
            expected = reference(torch.from_numpy(nchw(degraded / 255 * 2 - 1)).float(),
                                 torch.from_numpy(nchw(small / 255 * 2 - 1)).float()).numpy().ravel()
        assert max_abs(ours(degraded, small), expected) < LPIPS_TOL
    with pytest.raises(ValueError, match='at least'):
        ours(small[:, :8, :8], small[:, :8, :8])


def test_lpips_heads_are_the_shipped_ones():
    """The layout of the real files: five heads of the backbone's widths, no other tensor."""
    for net, widths in (('alex', (64, 192, 384, 256, 256)), ('vgg', (64, 128, 256, 512, 512))):
        heads = load_pth(os.path.join(LPIPS_HEADS, f'{net}.pth'))
        assert {key: value.shape for key, value in heads.items()} == {
            f'lin{k}.model.1.weight': (1, width, 1, 1) for k, width in enumerate(widths)}


def inception_batch(faces):
    """Four [0, 1] float32 images: the photos and their mirror images."""
    return np.concatenate([faces, faces[:, :, ::-1]]).astype(np.float32) / 255


@functools.lru_cache(maxsize=1)
def random_fid_inception():
    """pytorch-fid's InceptionV3 (block 3, 2048-d) with random weights, and the same weights in the layout of
    pt_inception-2015-12-05-6726825d.pth (torchvision's Inception3 with the FID blocks, its 1008-way fc); built
    without the download pytorch-fid makes."""
    original_load, original_build = official_inception.load_state_dict_from_url, official_inception.fid_inception_v3
    try:
        official_inception.load_state_dict_from_url = lambda *args, **kwargs: None
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torchvision.models.inception.Inception3, 'load_state_dict', lambda self, state: None)
            network = randomize(original_build())
        # Batch-norm statistics of real images: with drawn ones the random network's features barely depend on
        # its input.
        calibrate_batch_norms(network, torch.from_numpy(nchw(inception_batch(photos(299)) * 2 - 1)))
        official_inception.fid_inception_v3 = lambda: network
        reference = official_inception.InceptionV3([3]).eval()
    finally:
        official_inception.load_state_dict_from_url = original_load
        official_inception.fid_inception_v3 = original_build
    return reference, state_dict_numpy(network)


@pytest.fixture(scope='module')
def fid_inception():
    return random_fid_inception()


def test_fid_features_match_pytorch_fid(faces, fid_inception):
    reference, state = fid_inception
    assert {'fc.weight', 'fc.bias'} <= set(state)  # the file's classifier, which we leave out
    ours = InceptionFeatures.from_state_dict(state)
    images = np.concatenate([faces[:, ::2, ::2], blurred(faces[:, ::2, ::2], 2)])  # 128x128, resized to 299
    with torch.no_grad():
        expected = reference(torch.from_numpy(nchw(images / np.float32(255))))[0].reshape(len(images), -1).numpy()
    features = ours(images)
    assert features.shape == (4, 2048)
    # Features reach about 2 here (batch norms calibrated on real photos): the tolerance scales with them.
    assert max_abs(features, expected) < NET_TOL * max(1, np.abs(expected).max())


def in_feature_span(first, second, *features):
    """Both FIDStatistics restricted to the span of the features' deviations and the means' difference. With
    fewer images than dimensions the covariances live in that span, so the Frechet distance there is the
    2048-d one in exact arithmetic, at a small fraction of the cost of scipy's 2048-d sqrtm (about 100 s on two
    busy cores)."""
    deviations = [f - f.mean(axis=0) for f in features] + [(first.mu - second.mu)[None]]
    _, singular, basis = np.linalg.svd(np.concatenate(deviations).astype(np.float64), full_matrices=False)
    basis = basis[singular > 1e-9 * singular[0]]
    return [FIDStatistics(basis @ s.mu, basis @ s.sigma @ basis.T) for s in (first, second)]


def test_frechet_distance_matches_pytorch_fid(tmp_path):
    rng = np.random.default_rng(4)
    cases = [(rng.normal(size=(300, 32)), rng.normal(0.2, 1.3, size=(200, 32))),  # well conditioned
             (rng.normal(size=(6, 64)).astype(np.float32), rng.normal(size=(5, 64)).astype(np.float32))]
    for first, second in cases:  # the second: singular covariances, complex square roots
        a, b = FIDStatistics.of(first), FIDStatistics.of(second)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            expected = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
            ours = frechet_distance(a, b)
        np.testing.assert_allclose(ours, expected, rtol=FID_RTOL)
        # pytorch-fid's statistics: np.mean and np.cov of the float32 features.
        np.testing.assert_array_equal(a.mu, np.mean(np.float32(first), axis=0))
        np.testing.assert_array_equal(a.sigma, np.cov(np.float32(first), rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        np.testing.assert_allclose(frechet_distance(*in_feature_span(a, b, first, second)), expected, rtol=1e-4)
        assert abs(frechet_distance(a, a)) < 1e-4 * np.trace(a.sigma)
    path = tmp_path / 'stats.npz'
    a.save(path)
    loaded = FIDStatistics.load(path)
    np.testing.assert_array_equal(loaded.mu, a.mu)
    np.testing.assert_array_equal(loaded.sigma, a.sigma)
    with np.load(path) as stats:  # pytorch-fid's --save-stats layout, which its compute_statistics_of_path reads
        assert set(stats.files) == {'mu', 'sigma'}
    with pytest.raises(ValueError, match='at least two images'):
        FIDStatistics.of(first[:1])
    with pytest.raises(ValueError, match='not FID statistics'):
        FIDStatistics.load(tmp_path / 'missing.npz')


@pytest.fixture(scope='module')
def arcface():
    reference = randomize(ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False))
    grey = official_input(np.concatenate([photos(), photos()[:, :, ::-1]]))
    calibrate_batch_norms(reference, grey)  # so that the random network tells faces apart
    return reference, IdentityDistance.from_state_dict(state_dict_numpy(reference))


def official_input(images):
    """GFPGAN's identity-loss input: gray_resize_for_identity of the [-1, 1] RGB images."""
    x = torch.from_numpy(nchw(images.astype(np.float32) / 255 * 2 - 1))
    grey = (0.2989 * x[:, 0] + 0.5870 * x[:, 1] + 0.1140 * x[:, 2]).unsqueeze(1)
    return F.interpolate(grey, (128, 128), mode='bilinear', align_corners=False)


def official_embeddings(network, images):
    with torch.no_grad():
        return network(official_input(images)).numpy().astype(np.float64)


def test_identity_matches_gfpgan_arcface(faces, arcface):
    reference, ours = arcface
    degraded = blurred(faces, 3)
    restored_embedding, gt_embedding = official_embeddings(reference, degraded), official_embeddings(reference, faces)
    assert max_abs(ours.embeddings(degraded), restored_embedding) < NET_TOL
    cosine = np.sum(restored_embedding * gt_embedding, axis=1) / (
        np.linalg.norm(restored_embedding, axis=1) * np.linalg.norm(gt_embedding, axis=1))
    expected = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert max_abs(ours(degraded, faces), expected) < DEGREES_TOL
    assert np.all(np.asarray(ours(faces, faces)) < 1e-3)


def test_blur_scores_worse_on_every_metric(faces, fid_inception, arcface, tmp_path):
    """Stronger blur is worse on every metric, the networks' random weights notwithstanding; FID of a set against
    itself is about 0."""
    reference = official_lpips.LPIPS(pretrained=True, net='alex', pnet_rand=True, verbose=False)
    lpips = LPIPS.from_state_dicts(torchvision_layout(reference), load_pth(os.path.join(LPIPS_HEADS, 'alex.pth')),
                                   'alex')
    inception = InceptionFeatures.from_state_dict(fid_inception[1])
    identity = arcface[1]
    # Four faces: the two photos and their mirror images.
    clean = np.concatenate([faces, faces[:, :, ::-1]])
    mild, strong = blurred(clean, 1), blurred(clean, 3)
    features = {name: np.asarray(inception(images)) for name, images in
                (('clean', clean), ('mild', mild), ('strong', strong))}
    fid = {}
    for name, ours in features.items():
        statistics = in_feature_span(FIDStatistics.of(ours), FIDStatistics.of(features['clean']), ours,
                                     features['clean'])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # singular covariances of four images
            fid[name] = frechet_distance(*statistics)
    assert abs(fid['clean']) < 1e-3 * fid['mild'] < fid['mild'] < fid['strong']
    higher_is_better = {'psnr': psnr, 'ssim': ssim}
    lower_is_better = {'lpips': lpips, 'identity': identity}
    for name, metric in higher_is_better.items():
        assert np.all(np.asarray(metric(strong, clean)) < np.asarray(metric(mild, clean))), name
    for name, metric in lower_is_better.items():
        assert np.all(np.asarray(metric(strong, clean)) > np.asarray(metric(mild, clean))), name
    assert np.all(niqe(strong, params=NIQE_PARAMS) > niqe(clean, params=NIQE_PARAMS))
