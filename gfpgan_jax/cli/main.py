"""`gfpgan-jax COMMAND ...`: the installed command, one subcommand per job; each is the tool of the same job beside
the repository's top-level scripts, with the same flags (`gfpgan-jax restore` is `python infer.py`)."""
import importlib
import sys

# subcommand -> (module whose main(argv) runs it, what it does). Modules load only when chosen: the web page's
# gradio, for one, is an optional extra.
COMMANDS = {
    'restore': ('gfpgan_jax.cli.infer', 'restore the faces in photos, folders of photos and videos'),
    'convert': ('gfpgan_jax.cli.convert', 'convert official .pth weights to .safetensors and back'),
    'evaluate': ('gfpgan_jax.cli.evaluate', 'score restored faces against ground truth (PSNR, LPIPS, FID, ...)'),
    'benchmark': ('gfpgan_jax.evaluation.benchmark', 'restore a synthetic CelebA-Test-style set and print the paper\'s '
                                                     'Table 1'),
    'demo': ('gfpgan_jax.demo.__main__', 'serve the web page: restore photos in the browser'),
    'train': ('gfpgan_jax.cli.train', 'train a model from a config file (configs/*.py of a repository checkout)'),
}


def usage():
    width = max(map(len, COMMANDS))
    lines = [f'  {name:<{width}}  {what}' for name, (_, what) in COMMANDS.items()]
    return ('usage: gfpgan-jax COMMAND [options]   (gfpgan-jax COMMAND --help for its options)\n\ncommands:\n'
            + '\n'.join(lines) + '\n\nexample: gfpgan-jax restore -i old_photos -o restored')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f'error: unknown command {command!r}; choose from {", ".join(COMMANDS)} (see gfpgan-jax --help)',
              file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command][0]).main(rest)


if __name__ == '__main__':
    sys.exit(main())
