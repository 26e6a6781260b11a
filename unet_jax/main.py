r"""Trains and evaluates a U-Net: `python -m unet_jax.main --config CONFIG --workdir DIR`.

Examples:
  python -m unet_jax.main --config quickstart --workdir workdirs/quickstart
  python -m unet_jax.main --config configs/quickstart.py --workdir workdirs/quickstart
  python -m unet_jax.main --config configs/default.py --workdir workdirs/run1 \
      --config.optim.lr=3e-4 --config.batch_size=32

Any config field can be overridden with --config.<field>=<value>; a misspelt field is an error.
--config also takes a run's workdir, for the config that run recorded (its config.json):
  python -m unet_jax.main --config workdirs/run1 --config.seed=1 --workdir workdirs/run1-seed1
A run can start from another run's parameters (fine-tuning, a larger image size):
  python -m unet_jax.main --config workdirs/run1 --config.init_from.workdir=workdirs/run1 \
      --config.data.image_size=448 --workdir workdirs/run1-448
Re-running the same command resumes from the latest checkpoint in --workdir, under the config the
run was trained with (a changed field its parameters depend on is refused, naming it); on a
finished run it prints the final metrics again, in a second. SIGTERM, SIGINT (Ctrl-C), SIGUSR1 and
SIGUSR2 stop the run after its current step, checkpointed, with exit status 75; run the same
command to resume. A workdir another training process is using is refused at once (exit status
73). On several hosts, pass --jax_distributed on each of them (JAX's own multi-process runtime; on
TPU pods and SLURM/Open MPI clusters the coordinator is found automatically, elsewhere add
--coordinator_address, --num_processes and --process_id).

Exit status: 0 done; 1 an error (bad input or config: its message alone); 73 the workdir is in
use; 75 stopped on a signal, resumable.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from unet_jax import config_files  # importlib and os only: nothing that reads XLA_FLAGS.

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', None, config_files.flag_help('Training config'), lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, TensorBoard events '
                    'and the resolved config. Re-using it resumes the run.')
flags.DEFINE_bool('jax_distributed', False, 'Call jax.distributed.initialize() first, to train '
                  'over several processes/hosts. On TPU pods and SLURM/Open MPI clusters it finds '
                  'the coordinator itself; elsewhere give the three flags below.')
flags.DEFINE_string('coordinator_address', None, 'With --jax_distributed: host:port of process '
                    '0, the same on every process.')
flags.DEFINE_integer('num_processes', None, 'With --jax_distributed: how many processes.',
                     lower_bound=1)
flags.DEFINE_integer('process_id', None, 'With --jax_distributed: this process, 0..n-1.',
                     lower_bound=0)
flags.DEFINE_string('compilation_cache_dir', '~/.cache/unet_jax/xla', 'Persistent XLA '
                    'compilation cache, so a restarted or resumed run does not compile its steps '
                    'again; empty to disable.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}. Use --config.<field>=<value>.')
  from unet_jax import determinism

  if FLAGS.config.deterministic:
    determinism.set_xla_flags()  # Before JAX starts its backend.
  from unet_jax import results, run_config

  # Data paths absolute, as the run records them (and as the fast path compares them).
  config = run_config.with_absolute_data_paths(FLAGS.config)
  finished = None if FLAGS.jax_distributed else results.finished_metrics(FLAGS.workdir)
  if finished is not None and run_config.unchanged(config, FLAGS.workdir):
    # Answered from its files, neither TensorFlow nor a JAX backend started: 1 s, not 7. Any
    # difference (a changed field, a missing checkpoint) takes the full path below, which
    # decides whether to resume, validate or refuse.
    logging.info('The run in %s finished (step %d) under this config: nothing to train.',
                 FLAGS.workdir, FLAGS.config.num_train_steps)
    print(results.run_ended_text(finished, FLAGS.workdir), flush=True)
    return 0
  import jax

  if FLAGS.jax_distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from unet_jax import cli, compilation_cache, preemption, train, workdir_lock

  cli.quiet_library_logs()

  if FLAGS.compilation_cache_dir:
    compilation_cache.enable_compilation_cache(FLAGS.compilation_cache_dir)

  logging.info('JAX: process %d/%d, %d local / %d global devices (%s).', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.default_backend())
  try:
    val_metrics = train.train_and_evaluate(config, FLAGS.workdir)
  except preemption.Stopped as stopped:
    if jax.process_index() == 0:
      print(f'The run {stopped}.', flush=True)
    return preemption.EXIT_STOPPED
  except workdir_lock.InUse as in_use:  # Its own status: a sweep must not count it as failed.
    print(f'Error: {in_use}', file=sys.stderr, flush=True)
    return workdir_lock.EXIT_IN_USE
  if jax.process_index() == 0:
    print(results.run_ended_text(val_metrics, FLAGS.workdir), flush=True)
  return 0


if __name__ == '__main__':
  logging.use_absl_handler()
  from unet_jax import cli

  sys.argv = config_files.resolved_argv(sys.argv)  # --config quickstart: a preset by name.
  cli.run_absl(main, flags_parser=config_files.parse_flags)
