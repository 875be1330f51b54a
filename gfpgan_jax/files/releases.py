"""The official GFPGAN releases: fetched once into a cache, converted once, then loaded from there."""
import dataclasses
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request

from tqdm import tqdm

from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.weights import load_weights, save_converted

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    url: str


RELEASES = {
    '1': Release('GFPGANv1', 'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1.pth'),
    '1.2': Release('GFPGANCleanv1-NoCE-C2',
                   'https://github.com/TencentARC/GFPGAN/releases/download/v0.2.0/GFPGANCleanv1-NoCE-C2.pth'),
    '1.3': Release('GFPGANv1.3', 'https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth'),
    '1.4': Release('GFPGANv1.4', 'https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth'),
}


# The helper networks of the whole-image pipeline, as the official tools fetch them.
HELPER_WEIGHTS = {
    'detection_Resnet50_Final':
        'https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth',
    'parsing_parsenet': 'https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth',
    'RealESRGAN_x2plus': 'https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth',
    # What GFPGAN training starts from (options/train_gfpgan_v1.yml): the StyleGAN2 decoder, the identity network,
    # the released discriminators, and torchvision's VGG19 of the perceptual loss.
    'StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k': 'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/'
                                                   'StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth',
    'arcface_resnet18': 'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth',
    'GFPGANv1_net_d': 'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1_net_d.pth',
    'GFPGANv1_net_d_left_eye':
        'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1_net_d_left_eye.pth',
    'GFPGANv1_net_d_right_eye':
        'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1_net_d_right_eye.pth',
    'GFPGANv1_net_d_mouth': 'https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/GFPGANv1_net_d_mouth.pth',
    'vgg19-dcbb9e9d': 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
    # The metrics of gfpgan_jax.evaluation (fetched by helper_weights_path too):
    # LPIPS v0.1's backbones and linear heads, FID's InceptionV3, NIQE's pristine model as basicsr ships it.
    'alexnet-owt-7be5be79': 'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth',
    'vgg16-397923af': 'https://download.pytorch.org/models/vgg16-397923af.pth',
    'lpips_alex': 'https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth',
    'lpips_vgg': 'https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth',
    'pt_inception-2015-12-05-6726825d':
        'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth',
    'niqe_pris_params': 'https://github.com/XPixelGroup/BasicSR/raw/master/basicsr/metrics/niqe_pris_params.npz',
}


class DownloadError(RuntimeError):
    """A file that could not be downloaded; `reason` says why (the connection's error)."""
    reason = None


def cache_dir():
    return os.environ.get('GFPGAN_JAX_HOME') or os.path.join(os.path.expanduser('~'), '.cache', 'gfpgan_jax')


def download_path(url):
    """Where the file at `url` is kept in the cache: under the URL's file name, the name the official tools
    (load_file_from_url in facexlib, basicsr, gfpgan) save it as, so that files they fetched can be copied in."""
    return os.path.join(cache_dir(), os.path.basename(urllib.parse.urlparse(url).path))


def fetch(url, path, timeout=30, instead='pass --model-path FILE (or put it at {path})'):
    """Download `url` to `path` with a progress bar; the file appears only once complete. `instead` says what to
    do without a connection."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(path) as tmp:
            total = int(response.headers.get('Content-Length') or 0) or None
            with open(tmp, 'wb') as out, tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                                              desc=os.path.basename(path)) as bar:
                received = 0
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            # urllib ends a body cut short by a dropped connection as if it were complete.
            if total is not None and received != total:
                raise OSError(f'the connection closed after {received} of {total} bytes')
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = getattr(error, 'reason', error)
        failure = DownloadError(f'cannot download {url} ({reason}); fetch it where you have a connection and '
                                + instead.format(path=path))
        failure.reason = reason
        raise failure from None
    return path


def missing_downloads(versions=(), helpers=()):
    """The downloads (url, path, what to do instead) that `pretrained_path` and `helper_weights_path` would make
    for these releases and helper networks: their files not in the cache yet."""
    wanted = [_release_download(version) for version in versions if not os.path.isfile(_converted_path(version))]
    wanted += [(HELPER_WEIGHTS[name], download_path(HELPER_WEIGHTS[name]), 'put it at {path}')
               for name in dict.fromkeys(helpers)]
    return [download for download in wanted if not os.path.isfile(download[1])]


def fetch_all(downloads, timeout=30):
    """Make every download of `missing_downloads`, going on past failures, then raise one DownloadError naming each
    file that could not be fetched, its URL and where to put it. The cache folder is made for a download and removed
    again when that leaves it empty."""
    failures = []
    for url, path, instead in downloads:
        folder = os.path.dirname(path)
        made = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        try:
            fetch(url, path, timeout, instead)
        except DownloadError as error:
            failures.append((error, f'for {url}, {instead.format(path=path)}'))
        finally:  # Ctrl-C included
            if made and not os.listdir(folder):
                os.rmdir(folder)
    if len(failures) == 1:
        raise failures[0][0]
    if failures:
        raise DownloadError(f'cannot download {len(failures)} files ({failures[0][0].reason}); fetch them where you '
                            f'have a connection: ' + '; '.join(steps for _, steps in failures))


def _converted_path(version):
    return os.path.join(cache_dir(), f'{RELEASES[version].name}.safetensors')


def _release_download(version):
    url = RELEASES[version].url
    return url, download_path(url), 'pass --model-path FILE (or put it at {path})'


def pretrained_path(version):
    """Path of the converted weights of an official release, downloading and converting on first use."""
    converted = _converted_path(version)
    if not os.path.isfile(converted):
        fetch_all(missing_downloads([version]))
        save_converted(converted, *load_weights(_release_download(version)[1]))
    return converted


def helper_weights_path(name):
    """Path of the official file `HELPER_WEIGHTS[name]` (a helper network's weights, NIQE's model), downloaded on
    first use."""
    fetch_all(missing_downloads(helpers=[name]))
    return download_path(HELPER_WEIGHTS[name])
