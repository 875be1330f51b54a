"""Whole photos: gfpgan-jax's ImageRestorer against the official GFPGANer.enhance, every network random but the
same on both sides (v1.4-layout GFPGAN, ParseNet, a small Real-ESRGAN), detections fixed so that faces are found."""
import os

import cv2
import numpy as np
import pytest
import torch

import official
from facexlib.parsing.parsenet import ParseNet
from facexlib.utils import face_restoration_helper as facexlib_helper
from basicsr.archs.rrdbnet_arch import RRDBNet
from gfpgan_jax.inference import batching, pipeline
from gfpgan_jax.convert.rrdbnet import convert_rrdbnet
from gfpgan_jax.inference.background import BackgroundUpsampler
from gfpgan_jax.models import parsenet
from gfpgan_jax.inference.parsing import FaceParser
from gfpgan_jax.files.pth import load_pth
from gfpgan_jax.inference.restorer import FaceRestorer
from parity_utils import FixedDetector, calibrate_batch_norms, detection_rows, randomize, state_dict_numpy

EXAMPLES = os.path.join(os.path.dirname(__file__), '..', 'examples')
PHOTO = os.path.join(EXAMPLES, 'photos', 'grace_hopper.jpg')
FACE = os.path.join(EXAMPLES, 'aligned', 'grace_hopper.png')
SLIM_PARSER = dict(base_ch=16, ch_range=(16, 32), res_depth=2)
# Grace Hopper's eyes, nose and mouth corners in the half-size photo, and a made-up smaller, tilted face.
LANDMARKS = [np.float32([[113, 98.5], [152.5, 97.5], [131.5, 122.5], [119, 138], [145, 137.5]]),
             np.float32([[40, 230], [62, 236], [49, 248], [40, 258], [57, 262]])]


@pytest.fixture(scope='module')
def networks(tmp_path_factory):
    gfpgan = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=512, channel_multiplier=2, fix_decoder=False, input_is_latent=True, different_w=True,
        sft_half=True), seed=11)
    checkpoint = str(tmp_path_factory.mktemp('weights') / 'v14-random.pth')
    torch.save({'params_ema': gfpgan.state_dict()}, checkpoint)
    # A slimmer parser than the release's (15 s a face at 512 on two cores), calibrated so that it parses a face
    # into regions rather than one class; test_parsenet.py checks the released layout.
    parser = randomize(ParseNet(in_size=512, out_size=512, parsing_ch=19, **SLIM_PARSER), seed=12)
    calibrate_batch_norms(parser, torch.from_numpy(cv2.imread(FACE)[None, ::4, ::4, ::-1].transpose(0, 3, 1, 2)
                                                   / 127.5 - 1).float())
    torch.manual_seed(13)  # the official initialisation keeps a random Real-ESRGAN's output in range
    upsampler = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=2).eval()
    upsampler_checkpoint = str(tmp_path_factory.mktemp('weights') / 'realesrgan-random.pth')
    torch.save({'params_ema': upsampler.state_dict()}, upsampler_checkpoint)
    return checkpoint, parser, (upsampler, upsampler_checkpoint)


def official_enhance(networks, image, upscale, monkeypatch):
    import gfpgan.utils
    from realesrgan import RealESRGANer
    checkpoint, parser, (upsampler, upsampler_checkpoint) = networks
    monkeypatch.setattr(facexlib_helper, 'init_detection_model',
                        lambda *a, **k: FixedDetector(detection_rows(LANDMARKS)))
    monkeypatch.setattr(facexlib_helper, 'init_parsing_model', lambda *a, **k: parser)
    background = RealESRGANer(scale=2, model_path=upsampler_checkpoint, model=upsampler, tile=64, tile_pad=10,
                              pre_pad=0, half=False, device=torch.device('cpu'))
    restorer = gfpgan.utils.GFPGANer(model_path=checkpoint, upscale=upscale, arch='clean', channel_multiplier=2,
                                     bg_upsampler=background, device=torch.device('cpu'))
    forward = restorer.gfpgan.forward
    restorer.gfpgan.forward = lambda *a, **k: forward(*a, **dict(k, randomize_noise=False))
    return restorer.enhance(image, has_aligned=False, paste_back=True)


def our_restorer(networks, upscale):
    checkpoint, parser, (_, upsampler_checkpoint) = networks
    options, variables = convert_rrdbnet(load_pth(upsampler_checkpoint))
    return pipeline.ImageRestorer(
        FaceRestorer.from_checkpoint(checkpoint, noise='fixed'), FixedDetector(detection_rows(LANDMARKS)),
        FaceParser.from_state_dict(state_dict_numpy(parser), parsenet.ParseNet(**SLIM_PARSER)),
        BackgroundUpsampler(options, variables, tile=64, tile_pad=10, pre_pad=0), upscale=upscale, batch_size=2)


def test_whole_photo_equals_the_official(networks, monkeypatch):
    image = cv2.imread(PHOTO)
    crops, faces, expected = official_enhance(networks, image, 2, monkeypatch)
    restorer = our_restorer(networks, 2)
    ours = restorer.enhance(image)
    np.testing.assert_array_equal(ours.cropped_faces, np.asarray(crops))
    assert np.abs(ours.restored_faces.astype(int) - np.asarray(faces).astype(int)).max() <= 1
    for face in ours.restored_faces:  # the parse masks keep part of each face: the paste is tested
        assert 0.05 < np.mean(restorer.parser.face_paste_mask(face) > 0.5) < 0.95
    assert ours.image.shape == expected.shape == (2 * image.shape[0], 2 * image.shape[1], 3)
    difference = np.abs(ours.image.astype(int) - expected.astype(int))
    # Measured: 1 level at most, on 0.27% of the values (faces within a level, parse labels near ties).
    assert difference.max() <= 1 and difference.mean() < 0.01, (difference.max(), difference.mean())


def test_batches_cover_any_face_count_with_few_shapes():
    assert batching.batch_shapes(0, 8) == []
    assert batching.batch_shapes(3, 8) == [4]
    assert batching.batch_shapes(8, 8) == [8]
    assert batching.batch_shapes(19, 8) == [8, 8, 4]
    assert batching.batch_shapes(5, 6) == [6]
    assert {size for count in range(1, 40) for size in batching.batch_shapes(count, 8)} == {1, 2, 4, 8}


def test_photo_modes_and_bad_input():
    with pytest.raises(ValueError, match='expected a uint8 image'):
        pipeline.as_bgr(np.zeros((4, 4, 3), np.float32))
    grey = pipeline.as_bgr(np.full((4, 5), 7, np.uint8))
    assert grey.shape == (4, 5, 3) and (grey == 7).all()
    assert pipeline.as_bgr(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
