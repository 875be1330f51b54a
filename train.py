"""Train GFPGAN: `python train.py --config configs/NAME.py --workdir DIR [--config.KEY=VALUE ...]`.

Rerunning the same command resumes from DIR's latest checkpoint. Multi-host: start one process per host with
--coordinator_address HOST:PORT --num_processes N --process_id I, or --distributed where the launcher's environment
describes the job (Cloud TPU pods, SLURM, Open MPI). See gfpgan_jax/training/trainer.py and the README.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'training configuration file (configs/*.py)', lock_config=True)
flags.DEFINE_string('workdir', None, 'folder of the run: checkpoints, metrics.jsonl, samples/, tensorboard/')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for a multi-host job')
flags.DEFINE_integer('num_processes', None, 'processes in the multi-host job')
flags.DEFINE_integer('process_id', None, 'this process\'s number in the multi-host job')
flags.DEFINE_bool('distributed', False, 'join the multi-host job the launcher\'s environment describes')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not FLAGS['verbosity'].present:  # orbax narrates every save at INFO
        logging.set_verbosity(logging.WARNING)
    from gfpgan_jax.files import compile_cache  # after flag parsing: --help stays fast
    from gfpgan_jax.training import mesh, trainer

    compile_cache.enable()  # a resumed run loads its step instead of compiling it again
    mesh.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                                detect=FLAGS.distributed)
    return trainer.run(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
    sys.exit(app.run(main))
