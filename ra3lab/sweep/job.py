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
MASTER_PORT_BASE = 20000   # a multi-process job's rendezvous port: this plus its job id modulo 20000


class RunJob(submitit.helpers.Checkpointable):
    """``RunJob()(experiment, overrides, quick, runs_root, force)`` composes and executes one run."""

    def __call__(self, experiment: str, overrides: list[str], quick: bool, runs_root: str, force: bool = False) -> dict:
        """Execute one run under ``runs_root`` (skipped if done unless ``force``, resumed if unfinished).

        Returns {"run_dir", "state": "done", "cached", "metrics": the summary's top-level scalars}.
        A failure is recorded in the run's status.json (with its traceback) and re-raised.
        """
        os.environ["RA3LAB_RUNS"] = str(runs_root)
        from ra3lab.config import compose_experiment
        from ra3lab.execute import check_resume, execute, launch, prepare
        from ra3lab.runtime import check_launch

        config = compose_experiment(experiment, list(overrides), quick=quick)
        run = prepare(experiment, config)
        try:
            if spans_processes(config):
                import torch

                check_launch(config, gpus=torch.cuda.device_count())   # this node's; the job spans nodes
                check_resume(run, force)
                launch(config, run_argv(experiment, overrides, quick, force), *rendezvous())
                summary = run.summary()
            else:
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


def spans_processes(config) -> bool:
    """Whether a run asks for several processes (``runtime.processes`` x ``runtime.nodes``) and is not one of them."""
    from ra3lab import runtime

    return "runtime" in config and runtime.processes(config.runtime) > 1 and runtime.world()[1] == 1


def run_argv(experiment: str, overrides: list[str], quick: bool, force: bool) -> list[str]:
    """The ``ra3lab`` arguments that run one experiment in each process of a launch."""
    return ["run", experiment, *overrides, *(["--quick"] * quick), *(["--force"] * force)]


def rendezvous() -> tuple[str, str, str]:
    """(node rank, master address, master port) of this task: in a SLURM job its node's index, the job's first node,
    and a port derived from the job id, so that the jobs sharing a node use different ports; elsewhere this machine
    and a free port."""
    if "SLURM_JOB_ID" not in os.environ:
        from ra3lab.runtime import free_port

        return "0", "127.0.0.1", str(free_port())
    env = submitit.JobEnvironment()
    return str(env.node), env.hostnames[0], str(MASTER_PORT_BASE + int(env.job_id.split("_")[0]) % 20000)


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


def check_span(config, profile: dict) -> int:
    """The nodes a run's job takes (``runtime.nodes``; 1 without a runtime block), checked against ``profile``
    before anything is submitted: at most its ``nodes``, one process per GPU of its ``gpus_per_node`` or per
    core of its ``cpus_per_task``."""
    if "runtime" not in config:
        return 1
    from ra3lab.runtime import check_launch

    name, wanted = profile["name"], config.runtime
    gpus = profile.get("gpus_per_node") or 0
    check_launch(config, gpus=gpus)
    check(wanted.nodes <= profile.get("nodes", 1), "runtime.nodes", wanted.nodes,
          f"profile {name} lets a run span at most {profile.get('nodes', 1)} nodes: lower runtime.nodes, or raise "
          "the profile's nodes")
    check(gpus > 0 or wanted.processes <= profile.get("cpus_per_task", 1), "runtime.processes", wanted.processes,
          f"profile {name} gives a task {profile.get('cpus_per_task', 1)} CPU cores: at most one process each "
          "(raise cpus_per_task, or lower runtime.processes)")
    return int(wanted.nodes)


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
    nodes = check_span(config, loaded)
    run = prepare(experiment, config)
    folder, job_name = runs_root() / "jobs" / experiment / run.path.name / "%j", f"ra3lab-{experiment}"
    if dry_run:
        launch = {}
        if spans_processes(config):
            from ra3lab.runtime import launch_command

            launch = {"launch": {"per node": launch_command(
                config.runtime, run_argv(experiment, overrides, quick, force), node_rank="<$SLURM_NODEID>",
                master_addr="<first host of $SLURM_JOB_NODELIST>",
                master_port=f"<{MASTER_PORT_BASE} + $SLURM_JOB_ID % 20000>")}}
        return {"experiment": experiment, "dry_run": True, "run_dir": str(run.path), "done": run.done, **launch,
                "sbatch": {"parameters": executor_parameters(loaded, job_name, nodes), "array_size": 1,
                           "script": sbatch_script(loaded, folder, 1, job_name, nodes)}}
    if run.done and not force:
        return execute(experiment, config)   # its stored summary: nothing to submit
    _check_idle(run)
    check_cluster(loaded)
    kwargs = {"experiment": experiment, "overrides": list(overrides), "quick": quick, "runs_root": str(runs_root()),
              "force": force}
    batch = submit(RunJob(), [kwargs], launcher="slurm", profile=loaded, folder=folder, job_name=job_name, nodes=nodes)
    outcome = _wait(batch, run, experiment, timeout_s)
    if not outcome.ok:
        raise RunError(str(run.path), f"SLURM job {outcome.job_id}", outcome.error or "no result")
    return {**run.summary(), "cached": outcome.result["cached"], "slurm_job_id": outcome.job_id}
