"""Execute one experiment config as one run directory (see :mod:`ra3lab.runs`)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from ra3lab.config import project_root
from ra3lab.errors import ConfigError, RunError
from ra3lab.log import say
from ra3lab.runs import Run, git_state, run_id


def runs_root() -> Path:
    """Where runs are stored: $RA3LAB_RUNS, else ``runs/`` in the project root."""
    return Path(os.environ.get("RA3LAB_RUNS", project_root() / "runs"))


@contextmanager
def runs_at(path: Path) -> Iterator[Path]:
    """Keep runs under ``path`` (``RA3LAB_RUNS``) inside the block, then restore the runs root before it."""
    saved = os.environ.get("RA3LAB_RUNS")
    os.environ["RA3LAB_RUNS"] = str(path)
    try:
        yield path
    finally:
        os.environ.pop("RA3LAB_RUNS") if saved is None else os.environ.update(RA3LAB_RUNS=saved)


def study_module(config: DictConfig):
    """The module named by ``config.study``; it provides ``validate(config)`` and ``run(config, run)``."""
    try:
        return importlib.import_module(config.study)
    except ModuleNotFoundError:
        raise ConfigError("study", config.study, "must name a module in ra3lab.studies") from None


def prepare(name: str, config: DictConfig) -> Run:
    """Validate ``config`` and every stage it consumes (raising ConfigError before any work) and return its
    run directory (see :mod:`ra3lab.stages`)."""
    from ra3lab.stages import plan

    return plan(name, config).run()


def warn_if_stale(run: Run) -> None:
    """Say on stderr when a reused run was computed by other code than the checkout's."""
    then = run.provenance().get("commit")
    now = git_state(project_root())["commit"]
    if then and now and then != now:
        say("run", f"reusing {run.path} computed at commit {then[:10]} (now {now[:10]}); "
                   "pass --force to recompute it with this code")


def execute(name: str, config: DictConfig, force: bool = False, reporter=None) -> dict:
    """Run experiment ``name`` unless its summary already exists (or ``force``); returns the summary.

    The runs it consumes (:mod:`ra3lab.stages`) are reused when done and computed first when not (``force``
    recomputes only this run). See :func:`execute_node` for what running one means.
    """
    from ra3lab.stages import order, plan

    root = plan(name, config)
    for node in order([root])[:-1]:
        execute_node(node.experiment, node.config)
    return execute_node(root.experiment, root.config, force=force, reporter=reporter)


def execute_node(name: str, config: DictConfig, force: bool = False, reporter=None) -> dict:
    """Run one stored config (a stage's own, upstream ids included) of experiment ``name`` under the lock of its
    run directory, unless its summary exists (or ``force``); returns the summary.

    An unfinished run resumes from its checkpoint; a run that raises is marked failed (status.json)
    and the error propagates; a ConfigError raised once the run started is a :class:`RunError` naming
    the run (the input was valid: the study met a case it cannot handle). ``reporter(step, metrics)``
    is called after every logged metric line. A second process asking for the same run waits for the
    first and reuses its result. In a launch of several processes (:mod:`ra3lab.runtime`) every process runs it
    (:func:`_replicated`).
    """
    from ra3lab.runtime import world
    from ra3lab.stages import lock

    run = Run(runs_root() / name / run_id(config), config)
    check_resume(run, force)
    if world()[1] > 1:
        return _replicated(name, config, run, force, reporter)
    with lock(run.path):
        if run.done and not force:
            warn_if_stale(run)
            return {**run.summary(), "cached": True}
        return _compute(name, config, run, force, reporter)


def check_resume(run: Run, force: bool) -> None:
    """ConfigError naming the key and its fix where ``run`` has progress to resume (and is not ``force``d to start
    over) that its runtime cannot resume (:func:`ra3lab.runtime.check_resumable`: FSDP shards)."""
    from ra3lab.runtime import check_resumable

    if not force and "runtime" in run.config and run.resumable:
        check_resumable(run.provenance().get("runtime", {}), run.config.runtime)


def _compute(name: str, config: DictConfig, run: Run, force: bool, reporter) -> dict:
    """Run the study of ``config`` in ``run`` (cleared first when ``force``); its summary."""
    import torch

    from ra3lab.ra3.arms import CHECKPOINTS

    if force:
        for stale in ("summary.json", "checkpoint.json"):
            (run.path / stale).unlink(missing_ok=True)
        shutil.rmtree(run.path / CHECKPOINTS, ignore_errors=True)       # models saved by studies that train them
    run.reporter = reporter
    torch.manual_seed(int(config.seed))
    if config.get("threads"):
        torch.set_num_threads(int(config.threads))
    try:
        run.start(project_root())
        summary = study_module(config).run(config, run)
    except BaseException as error:
        run.fail(error)
        if isinstance(error, ConfigError):
            raise RunError.of(run.path, "the study, outside run.map", error) from error
        raise
    return {**run.finish({"experiment": name, "seed": int(config.seed), **summary}), "cached": False}


def _replicated(name: str, config: DictConfig, run: Run, force: bool, reporter) -> dict:
    """One run computed by every process of a launch, in step: rank 0 in the run directory (under its lock), every
    other rank in a replica of it under ``<runs>/.ranks/<rank>/`` started as a copy of the run directory (so that
    all resume from rank 0's checkpoint) and removed once the run is done. Rank 0 decides whether the run is done
    and tells the others, so that all of them compute it or none."""
    from ra3lab.runtime import accelerator, barrier, from_main, world
    from ra3lab.stages import lock

    rank = world()[0]
    accelerator(config.get("runtime"))                 # joins the launch's process group on the runtime's device
    with lock(run.path) if rank == 0 else contextlib.nullcontext():
        done = from_main(run.done and not force)
        if done:
            return {**run.summary(), "cached": True}
        replica = run if rank == 0 else Run(runs_root() / ".ranks" / str(rank) / name / run.path.name, config)
        if rank != 0:
            shutil.rmtree(replica.path, ignore_errors=True)
            if run.path.exists():
                shutil.copytree(run.path, replica.path)
        barrier()                                       # every replica is ready before rank 0 writes
        summary = _compute(name, config, replica, force, reporter)
        barrier()                                       # rank 0 has written the run
    if rank != 0:
        shutil.rmtree(replica.path, ignore_errors=True)
        return {**run.summary(), "cached": False}
    return summary


def launch(config: DictConfig, argv: list[str], node: str = "0", master: str = "127.0.0.1",
           port: str | None = None) -> None:
    """Start this node's processes of a run, ``runtime.launcher`` around ``ra3lab <argv>``, and wait for them
    (their progress goes to stderr); RunError when the launcher fails. ``node``: this node's rank; ``master`` and
    ``port``: where the processes meet (default: this machine, a free port)."""
    import subprocess

    from ra3lab.runtime import free_port, launch_command

    command = launch_command(config.runtime, argv, node, master, port or str(free_port()))
    say("run", f"node {node}: {' '.join(command)}")
    status = subprocess.run(command, stdout=subprocess.DEVNULL, check=False).returncode
    if status != 0:
        raise RunError(f"node {node}", f"the launch of {config.runtime.processes} processes",
                       f"{config.runtime.launcher} exited with status {status} (see the messages above and the "
                       "run's status.json)")


def launch_locally(name: str, config: DictConfig, argv: list[str], force: bool = False) -> dict:
    """Run experiment ``name`` in ``runtime.processes`` processes on this machine (its config checked against the
    machine by the caller, its checkpoints against the runtime here); returns rank 0's summary."""
    run = prepare(name, config)
    check_resume(run, force)
    launch(config, argv)
    return {**run.summary(), "processes": int(config.runtime.processes)}
