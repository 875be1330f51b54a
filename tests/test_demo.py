"""The web page in a real browser (Debian's headless Chromium driven by Playwright), its /restore API through
gradio_client, and the restoring behind them: what the page gives back is what infer.py writes for the same photo
and settings, pixel for pixel; bad files get a one-line message on the page.

The releases are random-weight models saved as the official files in GFPGAN_JAX_HOME, loaded by the page's own
loader; the detector reports the photo's known face (random RetinaFace weights find none) and faces are pasted
with square masks, on both sides.
"""
import os
import shutil
import socket

import cv2
import numpy as np
import PIL.Image
import pytest
import torch

import official
from gfpgan_jax.cli import infer as infer_cli
from gfpgan_jax.cli.main import main as gfpgan_jax_command
from gfpgan_jax.demo import app, models
from gfpgan_jax.demo.__main__ import launch, parse_args
from parity_utils import FixedDetector, detection_rows, randomize

PHOTO = os.path.join(os.path.dirname(__file__), '..', 'examples', 'photos', 'grace_hopper.jpg')
FACE = np.float32([[113, 98.5], [152.5, 97.5], [131.5, 122.5], [119, 138], [145, 137.5]])
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
WAIT_MS = 120_000  # for a restoration on a busy 2-core machine


@pytest.fixture(scope='module')
def offline_releases(tmp_path_factory):
    """GFPGAN_JAX_HOME holding a random-weight v1.4 file (a small network in the release's layout), the fixed
    detector and square masks in place of RetinaFace and ParseNet, and no downloads."""
    home = tmp_path_factory.mktemp('home')
    module = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=32, num_style_feat=16, narrow=0.125, channel_multiplier=2, fix_decoder=False,
        input_is_latent=True, different_w=True, sft_half=True), seed=3)
    torch.save({'params_ema': module.state_dict()}, home / 'GFPGANv1.4.pth')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('GFPGAN_JAX_HOME', str(home))
        patch.setattr(models.FaceDetector, 'from_pretrained', classmethod(
            lambda cls: FixedDetector(detection_rows([FACE]))))
        patch.setattr(models.FaceParser, 'from_pretrained', classmethod(lambda cls: None))
        patch.setattr(app, 'MAX_UPLOAD', '200kb')  # the photos are 13 kB; see test_page_refuses_an_oversized_upload
        for module_with_downloads in (models, infer_cli):
            patch.setattr(module_with_downloads, 'fetch_all', lambda downloads: None)
        yield home


@pytest.fixture(scope='module')
def loaded(offline_releases):
    loaded = models.Models.load(('1.4',))
    loaded.warm_up(cv2.imread(PHOTO))
    return loaded


@pytest.fixture(scope='module')
def page_url(loaded):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    demo = app.build_demo(loaded)
    yield launch(demo, '127.0.0.1', port, block=False)
    demo.close()


@pytest.fixture(scope='module')
def infer_output(offline_releases, tmp_path_factory):
    """What infer.py writes for the photo with the page's defaults: release 1.4, rescale 2, the official output."""
    inputs, out = tmp_path_factory.mktemp('in'), tmp_path_factory.mktemp('out')
    shutil.copy(PHOTO, inputs)
    assert infer_cli.main(['-i', str(inputs), '-o', str(out), '-v', '1.4', '-s', '2', '--ext', 'png',
                           '--no-compile-cache']) == 0
    return cv2.imread(str(out / 'restored_imgs' / 'grace_hopper.png'))


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    assert os.path.exists(CHROMIUM), f'{CHROMIUM} is missing: apt-get install -y chromium'
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def upload_and_restore(browser, url, path):
    page = browser.new_page(accept_downloads=True)
    page.goto(url)
    # The whole page rendered (its last control too) before the file goes in: a file set while the app is still
    # starting can be dropped.
    page.locator('#restore').wait_for(timeout=WAIT_MS)
    page.locator('#photos input[type=file]').set_input_files(path)
    page.get_by_text(os.path.basename(path)).first.wait_for(timeout=WAIT_MS)  # uploaded
    page.locator('#restore').click()
    return page


def test_page_restores_a_photo_as_infer_writes_it(browser, page_url, infer_output, tmp_path):
    page = upload_and_restore(browser, page_url, PHOTO)
    page.locator('#downloads a[download]').first.wait_for(timeout=WAIT_MS)
    assert page.locator('#before-after img').count() == 2  # the comparison slider's two sides
    assert page.locator('#faces img').count() == 1  # the photo's one face: input | restored
    links = page.locator('#downloads a[download]')
    assert [links.nth(i).get_attribute('download') for i in range(links.count())] == ['grace_hopper.png',
                                                                                       'grace_hopper_00.png']
    with page.expect_download() as download:
        links.first.click()
    download.value.save_as(tmp_path / 'downloaded.png')
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'downloaded.png')), infer_output)
    page.close()


def test_page_says_what_is_wrong_with_a_corrupt_file(browser, page_url, tmp_path):
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8 not the rest of a photo')
    page = upload_and_restore(browser, page_url, str(broken))
    message = page.get_by_text('broken.jpg: its JPEG data ends early')
    message.first.wait_for(timeout=WAIT_MS)
    assert 'Traceback' not in page.content()
    page.close()


def test_page_refuses_an_oversized_upload(browser, page_url, tmp_path):
    big = str(tmp_path / 'big.png')
    cv2.imwrite(big, np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8))  # 480 kB
    page = browser.new_page()
    page.goto(page_url)
    page.locator('#photos input[type=file]').set_input_files(big)
    page.get_by_text('exceed the maximum allowed size of 200.0 Kb: "big.png"').first.wait_for(timeout=WAIT_MS)
    page.close()


def test_restore_api(page_url, infer_output, tmp_path):
    from gradio_client import Client, handle_file
    (tmp_path / 'notes.txt').write_text('not a photo')
    client = Client(page_url, verbose=False)
    restored = client.predict(handle_file(PHOTO), api_name='/restore')  # every other argument by default
    np.testing.assert_array_equal(cv2.imread(restored), infer_output)
    weaker = cv2.imread(client.predict(handle_file(PHOTO), '1.4', 1, 0.5, api_name='/restore'))
    assert weaker.shape == (300, 256, 3) and not np.array_equal(weaker, cv2.resize(infer_output, (256, 300)))
    with pytest.raises(Exception, match='1.5 is greater than maximum value 1'):  # said by gradio's Number
        client.predict(handle_file(PHOTO), '1.4', 2, 1.5, api_name='/restore')
    with pytest.raises(Exception, match='notes.txt: not a readable image'):
        client.predict(handle_file(str(tmp_path / 'notes.txt')), api_name='/restore')


def test_uploads_are_read_as_infer_reads_them(loaded, tmp_path):
    photo = PIL.Image.open(PHOTO)
    exif = photo.getexif()
    exif[0x0112] = 6  # EXIF orientation: the camera was turned; shown rotated 90 degrees clockwise
    photo.save(tmp_path / 'turned.jpg', exif=exif, quality=95)
    (tmp_path / 'empty.png').write_bytes(b'')
    paths = [str(tmp_path / 'turned.jpg'), PHOTO, PHOTO, str(tmp_path / 'empty.png')]
    done = app.restore_photos(loaded, paths, str(tmp_path), rescale=1)
    assert [p.name for p in done.photos] == ['turned', 'grace_hopper', 'grace_hopper_2']
    assert cv2.imread(done.photos[0].after).shape == (256, 300, 3)  # upright: as wide as the photo is high
    assert done.problems == ['empty.png: is empty']
    written = [f'{name}{end}' for name in ('turned', 'grace_hopper', 'grace_hopper_2')
               for end in ('.png', '_before.jpg', '_00.png', '_00_cmp.png')]
    assert sorted(os.listdir(tmp_path)) == sorted(written + ['empty.png', 'turned.jpg'])


@pytest.mark.parametrize('settings,message', [
    (dict(rescale=5), 'rescale must be a whole number from 1 to 4'),
    (dict(rescale=1.5), 'rescale must be a whole number'),
    (dict(fidelity=-1), 'fidelity must be a number from 0 to 1'),
    (dict(release='1.3'), "release '1.3' is not loaded here"),
])
def test_bad_settings_are_refused(loaded, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        app.restore_photos(loaded, [PHOTO], str(tmp_path), **settings)


def test_big_photos_and_too_many_are_refused(loaded, tmp_path):
    done = app.restore_photos(loaded, [PHOTO], str(tmp_path), max_pixels=10_000)
    assert done.photos == [] and done.problems == [
        'grace_hopper.jpg: 256x300 pixels is more than this page restores (0.01 megapixels); shrink it first, '
        'or use infer.py']
    with pytest.raises(ValueError, match='21 photos at once is more than this page takes'):
        app.restore_photos(loaded, [PHOTO] * 21, str(tmp_path))


def test_command_line(capsys):
    args = parse_args(['--host', '0.0.0.0', '--port', '8080', '--releases', '1.4,1.2'])
    assert (args.host, args.port, args.releases) == ('0.0.0.0', 8080, ('1.4', '1.2'))
    with pytest.raises(SystemExit):
        parse_args(['--releases', '1'])
    assert gfpgan_jax_command(['demo', '--port', '0']) == 2  # the installed command hands its flags on
    assert gfpgan_jax_command(['bogus']) == 2 and gfpgan_jax_command([]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and 'gfpgan-jax restore -i old_photos -o restored' in err
