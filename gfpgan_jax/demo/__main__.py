"""`python -m gfpgan_jax.demo [--host H] [--port P]`: serve the web page, with every network loaded and compiled
before it opens."""
import argparse
import os
import sys

import cv2

from gfpgan_jax.cli.usage import ArgumentParser, whole_number
from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.demo.models import PAGE_RELEASES, Models
from gfpgan_jax.files import compile_cache
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import DownloadError


def release_list(text):
    """--releases: releases among PAGE_RELEASES, comma-separated."""
    releases = [part.strip() for part in text.split(',') if part.strip()]
    if not releases or any(release not in PAGE_RELEASES for release in releases):
        raise argparse.ArgumentTypeError(f'expected releases among {", ".join(PAGE_RELEASES)}, got {text!r}')
    return tuple(dict.fromkeys(releases))


def parse_args(argv):
    p = ArgumentParser(prog='python -m gfpgan_jax.demo', description=__doc__)
    p.add_argument('--host', default='127.0.0.1',
                   help='address to serve on: 127.0.0.1 (default) for this computer only, 0.0.0.0 for the network')
    p.add_argument('--port', type=whole_number(1, 65535), default=7860, help='port (default 7860)')
    p.add_argument('--releases', type=release_list, default=PAGE_RELEASES,
                   help=f'GFPGAN releases to offer, comma-separated (default {",".join(PAGE_RELEASES)})')
    p.add_argument('--concurrency', type=whole_number(1), default=1,
                   help='requests restored at once; the others wait in the queue (default 1)')
    p.add_argument('--queue', type=whole_number(1), default=32,
                   help='requests that may wait; more are turned away with a message (default 32)')
    p.add_argument('--no-background', action='store_true', help='never load Real-ESRGAN for the background')
    return p.parse_args(argv)


def launch(demo, host, port, concurrency=1, queue=32, block=True):
    """Serve `demo` (from app.build_demo) with the page's limits: `queue` requests may wait, `concurrency` run at
    once, uploads up to app.MAX_UPLOAD. Returns the local URL (at once with block=False)."""
    from gfpgan_jax.demo.app import EXAMPLES, MAX_UPLOAD
    demo.queue(default_concurrency_limit=concurrency, max_size=queue)
    _, url, _ = demo.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, show_error=False,
                            prevent_thread_lock=not block, allowed_paths=[str(EXAMPLES)], ssr_mode=False,
                            quiet=not block)
    return url


def main(argv=None):
    try:
        args = parse_args(argv)
    except SystemExit as exit:
        return exit.code
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # no calls home from a page that may run offline
    try:
        from gfpgan_jax.demo.app import EXAMPLES, build_demo
    except ImportError as error:
        print(f"error: the web page needs gradio ({error}): pip install 'gfpgan-jax[demo]'", file=sys.stderr)
        return 2
    try:
        compile_cache.enable()
    except OSError as error:
        print(f'note: compiled programs are not kept for the next start: {error}', file=sys.stderr)
    print('loading and compiling the networks (the first start downloads the weights) ...', file=sys.stderr)
    try:
        models = Models.load(args.releases, background=not args.no_background)
        for example in sorted(EXAMPLES.glob('*.jpg'))[:1]:
            models.warm_up(cv2.imread(str(example)))
    except (CheckpointError, ConversionError, DownloadError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    launch(build_demo(models), args.host, args.port, args.concurrency, args.queue)
    return 0


if __name__ == '__main__':
    sys.exit(main())
