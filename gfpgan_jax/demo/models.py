"""The networks behind the web page, loaded and compiled once when it starts: a restorer per GFPGAN release, and
the detector, face parser and background upsampler they share."""
import jax
import jax.numpy as jnp

from gfpgan_jax.files.releases import fetch_all, missing_downloads
from gfpgan_jax.inference.background import BackgroundUpsampler
from gfpgan_jax.inference.detection import FaceDetector
from gfpgan_jax.inference.parsing import FaceParser
from gfpgan_jax.inference.pipeline import ImageRestorer
from gfpgan_jax.inference.restorer import FaceRestorer

# The releases the page offers (v1, the paper's, needs colour-corrected inputs and is left to infer.py), newest last.
PAGE_RELEASES = ('1.2', '1.3', '1.4')


class Models:
    """restorers: release -> FaceRestorer; detector, parser (None: square paste masks), upsampler (None: the
    background is resized, as the official does on a CPU)."""

    def __init__(self, restorers, detector, parser=None, upsampler=None):
        if not restorers:
            raise ValueError('the page needs at least one GFPGAN release')
        self.restorers = dict(restorers)
        self.detector = detector
        self.parser = parser
        self.upsampler = upsampler

    @classmethod
    def load(cls, releases=PAGE_RELEASES, background=True):
        """The official weights (each missing file fetched first, all at once): the releases' restorers with the
        official tool's settings (random noise from seed 0, fp32), RetinaFace, ParseNet and, on a GPU/TPU when
        `background`, Real-ESRGAN x2 in bf16 tiles of 400."""
        background = background and jax.default_backend() != 'cpu'
        helpers = [FaceDetector.RELEASE, FaceParser.RELEASE] + ([BackgroundUpsampler.RELEASE] if background else [])
        fetch_all(missing_downloads(releases, helpers))
        upsampler = BackgroundUpsampler.from_pretrained(tile=400, tile_pad=10, pre_pad=0, dtype=jnp.bfloat16) \
            if background else None
        return cls({release: FaceRestorer.from_pretrained(release) for release in releases},
                   FaceDetector.from_pretrained(), FaceParser.from_pretrained(), upsampler)

    def pipeline(self, release, upscale, background=True):
        """An ImageRestorer for one request: its faces are numbered from 0, as in an infer.py run."""
        if release not in self.restorers:
            raise ValueError(f'release {release!r} is not loaded here; choose from {", ".join(self.restorers)}')
        return ImageRestorer(self.restorers[release], self.detector, self.parser,
                             self.upsampler if background else None, upscale=upscale)

    def warm_up(self, photo, fidelities=(None,)):
        """Compile what a request for `photo` (BGR) runs, for every release and each of `fidelities`, so that the
        first visitor does not wait for it. Other photo sizes compile the detector again (once per size)."""
        for release, restorer in self.restorers.items():
            for fidelity in fidelities:
                self.pipeline(release, 2).enhance(photo, fidelity=fidelity)
