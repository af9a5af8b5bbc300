"""The job one run executes, in a pool worker or a SLURM array task, and ``ra3lab run --launcher slurm``.

``RunJob`` lives in the package because submitit and process pools pickle it by reference. As a submitit
``Checkpointable``, a preempted or timed-out SLURM task is requeued with the same call; the run
then resumes from its own checkpoint.json (``execute`` does that), so no state travels in the pickle.
"""

from __future__ import annotations

import os

import submitit

from ra3lab.errors import RunError, check
from ra3lab.log import Meter, say
from ra3lab.runs import Run
from ra3lab.sweep.launch import Outcome, check_cluster, check_launcher, sbatch_script, submit
from ra3lab.sweep.profiles import executor_parameters

SCALARS = (int, float, bool, str)


class RunJob(submitit.helpers.Checkpointable):
    """``RunJob()(experiment, overrides, quick, runs_root, force)`` composes and executes one run."""

    def __call__(self, experiment: str, overrides: list[str], quick: bool, runs_root: str, force: bool = False) -> dict:
        """Execute one run under ``runs_root`` (skipped if done unless ``force``, resumed if unfinished).

        Returns {"run_dir", "state": "done", "cached", "metrics": the summary's top-level scalars}.
        A failure is recorded in the run's status.json (with its traceback) and re-raised.
        """
        os.environ["RA3LAB_RUNS"] = str(runs_root)
        from ra3lab.config import compose_experiment
        from ra3lab.execute import execute, prepare

        config = compose_experiment(experiment, list(overrides), quick=quick)
        run = prepare(experiment, config)
        try:
            summary = execute(experiment, config, force=force)
        except Exception as error:   # not SystemExit: a preempted job exits through it to be requeued
            if run.status().get("state") != "failed":   # e.g. an unreadable checkpoint fails before the study
                run.fail(error)
            raise
        metrics = {key: value for key, value in summary.items()
                   if isinstance(value, SCALARS) and key not in ("run_dir", "cached")}
        return {"run_dir": str(run.path), "state": "done", "cached": bool(summary.get("cached")), "metrics": metrics}

    def checkpoint(self, *args, **kwargs):
        """Requeue the same call without ``force``: the requeued job resumes what the forced one started."""
        return super().checkpoint(*args, **{**kwargs, "force": False})


def _check_idle(run: Run) -> None:
    """ConfigError when ``run`` is running (its job still queued or its process alive): two jobs would
    write one run directory."""
    from ra3lab.sweep.status import run_state

    state = run_state(run.path)
    check(state["state"] != "running", "run", str(run.path),
          f"is running ({state['job']}): wait for it, or stop that job and run again")


def _wait(batch, run: Run, experiment: str, timeout_s: float | None) -> Outcome:
    """The outcome of the one-task ``batch``, with a line on stderr when the job is submitted and when it ends."""
    [job_id] = batch.job_ids
    topic, meter = f"run {experiment}", Meter(1)
    say(topic, f"submitted job {job_id}; its log: {batch.jobs[0].paths.stderr}; its run: {run.path}")

    def report(_: int, outcome: Outcome) -> None:
        meter.done += 1
        say(topic, f"{meter.line()}: job {job_id} {'done' if outcome.ok else f'FAILED: {outcome.error}'}")

    try:
        [outcome] = batch.wait(timeout_s=timeout_s, on_outcome=report)
    except KeyboardInterrupt:
        say(topic, f"stopped waiting; job {job_id} keeps running (squeue -j {job_id}); "
                   "the same command returns its summary once it is done")
        raise
    return outcome


def run_on_slurm(experiment: str, overrides: list[str], *, quick: bool = False, force: bool = False,
                 profile: str | None = None, slurm: list[str] | tuple[str, ...] = (), dry_run: bool = False,
                 timeout_s: float | None = None) -> dict:
    """``ra3lab run --launcher slurm``: execute one run as a one-task SLURM array job and wait for it
    (at most ``timeout_s`` seconds; None: until it ends).

    The config (composed and validated by its study), the profile with its ``slurm`` overrides and the
    cluster are checked before anything is submitted. Returns the run's summary with ``slurm_job_id``; a
    done run's summary without a job (unless ``force``). ``dry_run`` returns the run directory and the
    exact sbatch parameters and script, and submits nothing. A job that fails raises RunError naming it.
    """
    from ra3lab.config import compose_experiment
    from ra3lab.execute import execute, prepare, runs_root

    loaded = check_launcher("slurm", profile, None, slurm)
    assert loaded is not None, "check_launcher loads the profile for slurm"
    check(timeout_s is None or timeout_s > 0, "timeout", timeout_s, "must be > 0 seconds")
    config = compose_experiment(experiment, list(overrides), quick=quick)
    run = prepare(experiment, config)
    folder, job_name = runs_root() / "jobs" / experiment / run.path.name / "%j", f"ra3lab-{experiment}"
    if dry_run:
        return {"experiment": experiment, "dry_run": True, "run_dir": str(run.path), "done": run.done,
                "sbatch": {"parameters": executor_parameters(loaded, job_name), "array_size": 1,
                           "script": sbatch_script(loaded, folder, 1, job_name)}}
    if run.done and not force:
        return execute(experiment, config)   # its stored summary: nothing to submit
    _check_idle(run)
    check_cluster(loaded)
    kwargs = {"experiment": experiment, "overrides": list(overrides), "quick": quick, "runs_root": str(runs_root()),
              "force": force}
    batch = submit(RunJob(), [kwargs], launcher="slurm", profile=loaded, folder=folder, job_name=job_name)
    outcome = _wait(batch, run, experiment, timeout_s)
    if not outcome.ok:
        raise RunError(str(run.path), f"SLURM job {outcome.job_id}", outcome.error or "no result")
    return {**run.summary(), "cached": outcome.result["cached"], "slurm_job_id": outcome.job_id}
