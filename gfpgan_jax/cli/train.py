"""`gfpgan-jax train` (also `python train.py`): train GFPGAN from a config file.

    gfpgan-jax train --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]

Rerunning the same command resumes from DIR's latest checkpoint. Multi-host: start one process per host with
--coordinator_address HOST:PORT --num_processes N --process_id I, or --distributed where the launcher's environment
describes the job (Cloud TPU pods, SLURM, Open MPI). See gfpgan_jax/training/trainer.py and the README.

The recipes in configs/ import each other as the package `configs`: they are read from a checkout of the
repository, given by a path from the current folder or an absolute one (the folder above the config file's folder
is importable while it loads, as the repository is for `python train.py`).
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

PROGRAM = 'gfpgan-jax train'
CONFIG = 'config'
# absl's own help flags exit with status 1 and list the flags of the __main__ module, which is not this one.
HELP = ('-h', '--help', '-help', '-?', '--helpshort', '-helpshort')
USAGE_ERROR = 2

config_flags.DEFINE_config_file(CONFIG, None, 'training configuration file (configs/*.py)', lock_config=True)
flags.DEFINE_string('workdir', None, 'folder of the run: checkpoints, metrics.jsonl, samples/, tensorboard/')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for a multi-host job')
flags.DEFINE_integer('num_processes', None, 'processes in the multi-host job')
flags.DEFINE_integer('process_id', None, 'this process\'s number in the multi-host job')
flags.DEFINE_bool('distributed', False, 'join the multi-host job the launcher\'s environment describes')
flags.mark_flags_as_required([CONFIG, 'workdir'])
FLAGS = flags.FLAGS


class CommandLineError(Exception):
    """A flag or config file that stops the command before training, said in one line. Not a ValueError: absl
    would wrap that into a flag error of its own."""


class _ConfigFileParser(flags.ArgumentParser):
    """ml_collections' parser of --config, but a file that is missing or cannot be imported is a CommandLineError,
    and the folder above the file's folder is on the import path while the file loads (configs/tiny.py imports
    `configs`; the installed command, unlike `python train.py`, does not have the repository on the path)."""

    def __init__(self, loader):
        self.loader = loader
        self.loaded = False  # whether the config file of the current parse has loaded

    def parse(self, path):
        self.loaded = False
        file = path.split(':', 1)[0]  # FILE:ARGUMENT passes ARGUMENT to get_config
        if not os.path.isfile(file):
            raise CommandLineError(f'config file {file} not found: run from a checkout of the repository '
                                   f'(configs/ holds the recipes) or give the config file\'s path')
        root = os.path.dirname(os.path.dirname(os.path.abspath(file)))
        sys.path.insert(0, root)
        try:
            config = self.loader.parse(path)
        except ImportError as error:
            hint = (' (the recipes import each other as the package configs: give the path of a file in the configs/ '
                    'folder of a checkout of the repository)' if (error.name or '').split('.')[0] == 'configs' else '')
            raise CommandLineError(f'config file {file} cannot be loaded: {error}{hint}') from None
        finally:
            sys.path.remove(root)
        self.loaded = True
        return config

    def flag_type(self):
        return self.loader.flag_type()


FLAGS[CONFIG].parser = _ConfigFileParser(FLAGS[CONFIG].parser)


def help_text():
    return (f'{__doc__.rstrip()}\n\nflags ({PROGRAM} --helpfull for absl\'s own, --verbosity among them):\n'
            + FLAGS.module_help(__name__).strip().split('\n', 1)[1])  # without the heading naming this module


def _parse_flags(command_line):
    try:
        return FLAGS(command_line)
    except flags.Error as error:
        raise CommandLineError(f'{error} (see --help)') from None
    except (AttributeError, KeyError) as error:
        if not FLAGS[CONFIG].parser.loaded:  # raised by the config file's own code: its traceback says where
            raise
        # ml_collections' message for a --config.KEY the config lacks: the key, a line break, a suggestion.
        message = error.args[0].args[0] if isinstance(error.args[0], KeyError) else error.args[0]
        message = str(message).replace('\n', '; ')
        raise CommandLineError(f'the config has no field {message} (see --help)') from None


def _forget_earlier_parse():
    """Flags are the process's: a second call in one process starts from the defaults, and the --config.KEY
    flags that parsing the config defined for the first call's config are dropped (parsing defines them again)."""
    FLAGS.unparse_flags()
    for name in [name for name in FLAGS if name.startswith(f'{CONFIG}.')]:
        delattr(FLAGS, name)


def _train(argv):
    if len(argv) > 1:
        raise CommandLineError(f'unexpected arguments: {" ".join(argv[1:])} (see --help)')
    if not FLAGS['verbosity'].present:  # orbax narrates every save at INFO
        logging.set_verbosity(logging.WARNING)
    from gfpgan_jax.files import compile_cache  # after flag parsing: --help stays fast
    from gfpgan_jax.training import mesh, trainer

    compile_cache.enable()  # a resumed run loads its step instead of compiling it again
    mesh.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                                detect=FLAGS.distributed)
    return trainer.run(FLAGS.config, FLAGS.workdir)


def main(argv=None):
    """Run the command on argv (the arguments after its name; sys.argv's when None); returns the exit status."""
    program = sys.argv[0] if argv is None else PROGRAM
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    options = argv[:argv.index('--')] if '--' in argv else argv  # absl's flags end at --
    if any(arg in HELP for arg in options):
        print(help_text())
        return 0
    _forget_earlier_parse()
    command_line = [program, *argv]
    # ml_collections reads the --config.KEY overrides from sys.argv, not from the argv that absl parses.
    saved_argv, sys.argv = sys.argv, command_line
    try:
        app.run(_train, argv=command_line, flags_parser=_parse_flags)
    except SystemExit as exit:  # app.run always exits, with _train's return value
        return 0 if exit.code is None else exit.code
    except CommandLineError as error:
        print(f'error: {error}', file=sys.stderr)
        return USAGE_ERROR
    finally:
        sys.argv = saved_argv
