"""The official GFPGAN releases: fetched once into a cache, converted once, then loaded from there."""
import dataclasses
import http.client
import os
import urllib.error
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
}


class DownloadError(RuntimeError):
    pass


def cache_dir():
    return os.environ.get('GFPGAN_JAX_HOME') or os.path.join(os.path.expanduser('~'), '.cache', 'gfpgan_jax')


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
        raise DownloadError(f'cannot download {url} ({reason}); fetch it where you have a connection and '
                            + instead.format(path=path)) from None
    return path


def pretrained_path(version):
    """Path of the converted weights of an official release, downloading and converting on first use."""
    release = RELEASES[version]
    converted = os.path.join(cache_dir(), f'{release.name}.safetensors')
    if not os.path.isfile(converted):
        original = os.path.join(cache_dir(), f'{release.name}.pth')
        if not os.path.isfile(original):
            os.makedirs(cache_dir(), exist_ok=True)
            fetch(release.url, original)
        save_converted(converted, *load_weights(original))
    return converted


def helper_weights_path(name):
    """Path of a helper network's official .pth, downloaded on first use."""
    path = os.path.join(cache_dir(), f'{name}.pth')
    if not os.path.isfile(path):
        os.makedirs(cache_dir(), exist_ok=True)
        fetch(HELPER_WEIGHTS[name], path, instead='put it at {path}')
    return path
