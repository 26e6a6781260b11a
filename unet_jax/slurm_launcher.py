"""The SLURM executor of a sweep, through submitit: one job per run (or a job array), a run
that starts from another in a job that SLURM starts once that one's has ended well; and what
the launcher asks of a job that ended before its run did."""

import os
import time
from collections.abc import Sequence

from unet_jax import cli, slurm, sweep_runs


def failed_job_error(root: str, job_id: str, queue: slurm.Queue) -> str | None:
  """The error to record for a job that ended before its run (or evaluation) did, if SLURM says
  it failed (slurm.FAILED_STATES): its end and its log's tail; None if it ended otherwise or
  sacct cannot tell."""
  end = queue.failed(job_id)
  if not end:
    return None
  tail = sweep_runs.log_tail(slurm.job_log(root, job_id))
  return f'SLURM job {job_id} ended {end[0]} (exit code {end[1]})' + (f':\n{tail}' if tail else
                                                                      '')


def slurm_executor(root: str, args, *, name: str, nodes: int):
  """submitit's executor for jobs of `nodes` nodes with `args`' SLURM options, its logs in
  `root/slurm/<job>/` (`slurm.job_log`)."""
  import submitit

  executor = submitit.AutoExecutor(folder=os.path.join(root, 'slurm', '%j'),
                                   cluster=args.submitit_cluster)
  parameters = {'name': name, 'timeout_min': args.slurm_time, 'nodes': nodes,
                'tasks_per_node': 1, 'gpus_per_node': args.slurm_gpus_per_node,
                'cpus_per_task': args.slurm_cpus_per_task, 'mem_gb': args.slurm_mem_gb}
  if executor.cluster == 'slurm':
    parameters.update(slurm_partition=args.slurm_partition, slurm_signal_delay_s=120,
                      slurm_additional_parameters=slurm.params(args.slurm_param) or None)
  executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
  return executor


def job_env_changes() -> dict[str, str | None]:
  """What a job changes in its own environment (SLURM's variables of the job: its nodes, tasks
  and GPUs stay): what `sweep_runs.child_env` changes here, nothing else (`slurm.TrainingJob`)."""
  here, wanted = dict(os.environ), sweep_runs.child_env(os.environ, None, None)
  return {name: wanted.get(name) for name in {*here, *wanted}
          if here.get(name) != wanted.get(name)}


def submit_slurm(root: str, runs: Sequence[sweep_runs.Run], manifest: dict, args) -> list:
  """Submits one job per run (or a job array) through submitit; returns the jobs.

  A run that starts from an unfinished run of the sweep (`Run.after`: submitted now, or in a job
  SLURM still holds) is a job of its own that SLURM starts once that run's job has ended well
  (`--dependency=afterok:JOB`; `--kill-on-invalid-dep=yes`: if it fails, SLURM cancels this
  one, and launching again reports it). submitit's local executor knows no dependencies: there,
  the launcher waits for the source's job before submitting the run."""
  executor = slurm_executor(root, args, name=os.path.basename(os.path.abspath(root)),
                            nodes=args.slurm_nodes)
  extra = ['--jax_distributed'] if args.slurm_nodes > 1 else []
  changes = job_env_changes()

  def function(run):
    return slurm.TrainingJob(run.command(os.path.join(root, run.name), extra), cwd=os.getcwd(),
                             env_changes=changes)

  def source(run):  # The unfinished run it waits for.
    waits_for = run.waits_for
    return waits_for if waits_for and manifest['runs'][waits_for].get('state') != 'finished' \
        else None

  independent = [run for run in runs if not source(run)]
  if args.slurm_array and independent:  # An empty batch is a warning of submitit's.
    with executor.batch():
      jobs = [executor.submit(function(run)) for run in independent]
  else:
    jobs = [executor.submit(function(run)) for run in independent]
  submitted = dict(zip((run.name for run in independent), jobs, strict=True))
  waiting, dropped = [run for run in runs if source(run)], set()
  while waiting:  # Sources first: a chain pre -> mid -> ft is submitted in that order.
    run = next(r for r in waiting if r.after not in {w.name for w in waiting})
    waiting.remove(run)
    job = submitted.get(run.after)
    if run.after in dropped:
      dropped.add(run.name)
    elif executor.cluster == 'slurm':
      after = job.job_id if job else sweep_runs.submitted_job(manifest['runs'][run.after])
      executor.update_parameters(slurm_additional_parameters={
          **slurm.params(args.slurm_param), 'dependency': f'afterok:{after}',
          'kill_on_invalid_dep': 'yes'})
      submitted[run.name] = executor.submit(function(run))
    elif job and (wait_for([job], label=f'sweep: {run.name} waits for {run.after}')
                  or sweep_runs.run_state(root, run.after) != 'finished'):
      print(f'sweep: {run.name} not submitted: it starts from {run.after}, which did not '
            'finish.', flush=True)
      dropped.add(run.name)
    else:
      submitted[run.name] = executor.submit(function(run))
  for name, job in submitted.items():
    manifest['runs'][name].update(state='submitted', job_id=str(job.job_id),
                                  cluster=executor.cluster, error=None)
  sweep_runs.write_manifest(root, manifest)
  return list(submitted.values())


def wait_for(jobs: Sequence, every_s: float = 60.0, poll_s: float = 5.0,
             label: str = 'sweep') -> None:
  """Waits for submitit jobs to end, with a progress line at the start and every `every_s`."""
  started, last = time.perf_counter(), None
  while True:
    ended = sum(job.done() for job in jobs)
    now = time.perf_counter()
    if ended == len(jobs):
      return
    if last is None or now - last >= every_s:
      last = now
      print(f'{label}: waiting for the jobs: {ended}/{len(jobs)} ended '
            f'({cli.clock(now - started)} so far).', flush=True)
    time.sleep(poll_s)
