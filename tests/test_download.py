"""Fetching and caching the official releases, against an HTTP server on the loopback interface (no internet)."""
import functools
import http.server
import os
import socket
import threading

import numpy as np
import pytest
import torch

import official
from flax import traverse_util

from gfpgan_jax.convert import generator as convert
from gfpgan_jax.files import releases as download
from gfpgan_jax.files.releases import DownloadError, Release, fetch, pretrained_path
from gfpgan_jax.inference.restorer import FaceRestorer
from gfpgan_jax.files.weights import load_converted
from parity_utils import randomize, state_dict_numpy

SMALL = dict(out_size=32, num_style_feat=16, narrow=0.125, channel_multiplier=2, different_w=True, sft_half=True,
             input_is_latent=True, fix_decoder=False)


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving one folder, counting the GET requests it answers."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=root))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.port = self._httpd.server_address[1]
        self.running = True

    def url(self, name):
        return f'http://127.0.0.1:{self.port}/{name}'

    def stop(self):
        if self.running:
            self.running = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()


@pytest.fixture
def server(tmp_path, request):
    root = tmp_path / 'served'
    root.mkdir()
    srv = _Server(str(root))
    request.addfinalizer(srv.stop)
    return srv


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope='module')
def small_module():
    return randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(**SMALL), seed=3)


def _flat(variables):
    return traverse_util.flatten_dict(dict(variables))


def assert_same_variables(ours, expected):
    ours, expected = _flat(ours), _flat(expected)
    assert sorted(ours) == sorted(expected)
    for path, array in expected.items():
        assert ours[path].dtype == np.float32, path
        assert ours[path].shape == array.shape, path
        assert np.array_equal(ours[path], array), path


def _assert_one_line_naming(error, url):
    message = str(error.value)
    assert '\n' not in message
    assert url in message
    assert '--model-path' in message


def test_fetch_downloads_exact_bytes_with_progress(server, tmp_path, capsys):
    payload = np.random.default_rng(0).integers(0, 256, 3 * download.CHUNK + 123, dtype=np.uint8).tobytes()
    (tmp_path / 'served' / 'weights.pth').write_bytes(payload)
    dest_dir = tmp_path / 'cache'
    dest_dir.mkdir()
    dest = dest_dir / 'weights.pth'

    assert fetch(server.url('weights.pth'), str(dest)) == str(dest)

    assert dest.read_bytes() == payload
    assert os.listdir(dest_dir) == ['weights.pth']  # the temporary file was renamed, nothing else left
    assert server.requests == ['/weights.pth']
    err = capsys.readouterr().err
    assert 'weights.pth' in err and '100%' in err  # tqdm's bar, labelled with the file, run to the end


def test_fetch_404_raises_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / 'cache' / 'missing.pth'
    dest.parent.mkdir()
    url = server.url('missing.pth')
    with pytest.raises(DownloadError) as error:
        fetch(url, str(dest))
    _assert_one_line_naming(error, url)
    assert server.requests == ['/missing.pth']
    assert os.listdir(dest.parent) == []


def test_fetch_unreachable_raises_and_leaves_nothing(closed_port, tmp_path):
    dest = tmp_path / 'weights.pth'
    url = f'http://127.0.0.1:{closed_port}/weights.pth'
    with pytest.raises(DownloadError) as error:
        fetch(url, str(dest), timeout=5)
    _assert_one_line_naming(error, url)
    assert os.listdir(tmp_path) == []


def test_fetch_truncated_body_raises_and_leaves_nothing(tmp_path):
    """A connection that drops before Content-Length bytes came is an error, not a short file."""

    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Length', str(2 * download.CHUNK))
            self.end_headers()
            self.wfile.write(b'\0' * (download.CHUNK // 2))
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Truncating)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{httpd.server_address[1]}/weights.pth'
        with pytest.raises(DownloadError) as error:
            fetch(url, str(tmp_path / 'weights.pth'), timeout=5)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    _assert_one_line_naming(error, url)
    assert f'{download.CHUNK // 2} of {2 * download.CHUNK} bytes' in str(error.value)
    assert os.listdir(tmp_path) == []


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(tmp_path / 'elsewhere'))
    assert download.cache_dir() == str(tmp_path / 'elsewhere')
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('GFPGAN_JAX_HOME', '')
    assert download.cache_dir() == str(tmp_path / '.cache' / 'gfpgan_jax')
    monkeypatch.delenv('GFPGAN_JAX_HOME')
    assert download.cache_dir() == str(tmp_path / '.cache' / 'gfpgan_jax')


def test_releases_point_at_the_official_files():
    assert list(download.RELEASES) == ['1', '1.2', '1.3', '1.4']
    for release in download.RELEASES.values():
        assert release.url.startswith('https://github.com/TencentARC/GFPGAN/releases/download/v')
        assert release.url.endswith(f'/{release.name}.pth')


def test_downloads_are_cached_under_the_official_tools_names(monkeypatch, tmp_path):
    """Every download is named as facexlib's and basicsr's load_file_from_url (behind GFPGANer, RealESRGANer and
    facexlib's models) name it, so their files can be copied into the cache; the names earlier versions gave the
    releases and helper networks (`name`.pth) stay, and no two downloads share a file."""
    import basicsr.utils.download_util
    import facexlib.utils.misc
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(tmp_path))
    official_names = []
    for module in (facexlib.utils.misc, basicsr.utils.download_util):
        monkeypatch.setattr(module, 'download_url_to_file', lambda url, path, **kwargs: official_names.append(path))
    urls = [release.url for release in download.RELEASES.values()] + list(download.HELPER_WEIGHTS.values())
    for url in urls:
        facexlib.utils.misc.load_file_from_url(url, save_dir=str(tmp_path))
        basicsr.utils.download_util.load_file_from_url(url, model_dir=str(tmp_path))
    assert official_names == [download.download_path(url) for url in urls for _ in range(2)]
    assert len(set(official_names)) == len(urls)
    # lpips' heads and NIQE's model were fetched under their URLs' names from the start.
    always_by_url = {'lpips_alex', 'lpips_vgg', 'niqe_pris_params'}
    earlier = [(r.url, r.name) for r in download.RELEASES.values()] + [
        (url, name) for name, url in download.HELPER_WEIGHTS.items() if name not in always_by_url]
    assert [download.download_path(url) for url, _ in earlier] == [str(tmp_path / f'{name}.pth') for _, name in earlier]


def test_pretrained_path_downloads_and_converts_once(server, small_module, monkeypatch, tmp_path):
    torch.save({'params_ema': small_module.state_dict()}, os.path.join(server.root, 'Tiny.pth'))
    cache = tmp_path / 'home'  # does not exist yet: pretrained_path makes it
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(cache))
    monkeypatch.setitem(download.RELEASES, '1.4', Release('GFPGANTiny', server.url('Tiny.pth')))

    path = pretrained_path('1.4')

    assert path == str(cache / 'GFPGANTiny.safetensors')
    assert server.requests == ['/Tiny.pth']
    # The download under the URL's name, the conversion under the release's; no temporary files.
    assert sorted(os.listdir(cache)) == ['GFPGANTiny.safetensors', 'Tiny.pth']
    config, variables = load_converted(path)
    expected_config, expected = convert.convert_state_dict(state_dict_numpy(small_module))
    assert config == expected_config
    assert (config.out_size, config.num_style_feat, config.narrow, config.input_is_latent) == (32, 16, 0.125, True)
    assert_same_variables(variables, expected)

    # Offline from now on: the converted file is used as it is.
    server.stop()
    with pytest.raises(DownloadError):  # the server really is gone
        fetch(server.url('Tiny.pth'), str(tmp_path / 'probe.pth'), timeout=5)
    mtime = os.stat(path).st_mtime_ns
    assert pretrained_path('1.4') == path
    assert os.stat(path).st_mtime_ns == mtime
    restorer = FaceRestorer.from_pretrained()  # '1.4' is the default version
    assert restorer.config == expected_config
    assert_same_variables(restorer.variables, expected)

    # Without the converted file, the downloaded .pth is converted again, still with no network.
    os.remove(path)
    assert pretrained_path('1.4') == path
    assert_same_variables(load_converted(path)[1], expected)
    assert server.requests == ['/Tiny.pth']


def test_from_pretrained_unknown_version(monkeypatch, tmp_path):
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(tmp_path))
    with pytest.raises(ValueError) as error:
        FaceRestorer.from_pretrained('2.0')
    message = str(error.value)
    assert "'2.0'" in message
    assert '1, 1.2, 1.3, 1.4' in message
    assert os.listdir(tmp_path) == []


def test_helper_weights_are_fetched_once_into_the_cache(server, closed_port, tmp_path, monkeypatch):
    payload = os.urandom(3000)
    (tmp_path / 'served' / 'parsing_parsenet.pth').write_bytes(payload)
    cache = tmp_path / 'cache'
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(cache))
    monkeypatch.setitem(download.HELPER_WEIGHTS, 'parsing_parsenet', server.url('parsing_parsenet.pth'))
    for _ in range(2):
        assert download.helper_weights_path('parsing_parsenet') == str(cache / 'parsing_parsenet.pth')
    assert (cache / 'parsing_parsenet.pth').read_bytes() == payload
    assert server.requests == ['/parsing_parsenet.pth']

    offline = f'http://127.0.0.1:{closed_port}/RealESRGAN_x2plus.pth'
    monkeypatch.setitem(download.HELPER_WEIGHTS, 'RealESRGAN_x2plus', offline)
    with pytest.raises(DownloadError) as error:
        download.helper_weights_path('RealESRGAN_x2plus')
    message = str(error.value)
    assert '\n' not in message and offline in message and message.endswith(
        f'put it at {cache / "RealESRGAN_x2plus.pth"}')
