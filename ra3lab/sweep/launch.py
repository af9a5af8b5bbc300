"""Run ``fn(**kwargs)`` for each kwargs as local processes or as ONE SLURM array job: the one place that
talks to process pools and submitit.

    outcomes = launch(fn, [{"x": 1}, {"x": 2}], launcher="slurm", profile="localhost", folder=path)

``fn`` must be importable on the node (a module-level function or an instance of a class in the
package: both pickle by reference). A submitit ``Checkpointable`` instance is requeued on preemption
or timeout. Every wait is bounded: a job cancelled or killed outside our control ends its wait
(as an error) once squeue stops listing it, with or without SLURM accounting. Locally, a worker
killed from outside breaks the whole pool (Python stops the other workers too): every unfinished
call then ends as an error, and their runs resume on the next launch.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shlex
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ra3lab.errors import ConfigError, check, check_choice
from ra3lab.sweep import slurm
from ra3lab.sweep.profiles import executor_parameters, load_profile, python_command

LAUNCHERS = ("local", "slurm")
POLL_S = 1.0          # seconds between checks for result files
QUEUE_POLL_S = 3.0    # seconds between squeue calls while waiting on SLURM
LOST_AFTER_S = 15     # a task absent from squeue this long without a result file has ended without one
SILENT_AFTER_S = 600  # stop waiting when squeue has not answered for this long


@dataclass
class Outcome:
    """How one call ended: ``result`` when ``ok``, else ``error`` (one line). ``job_id`` is the SLURM
    array task (``<array id>_<index>``); None for local processes."""

    ok: bool
    result: Any = None
    error: str | None = None
    job_id: str | None = None


def _ended(outcomes: list[Outcome | None]) -> list[Outcome]:
    """``outcomes`` once every call has one."""
    assert all(outcome is not None for outcome in outcomes), "a call ended without an outcome"
    return cast(list[Outcome], outcomes)


def default_workers() -> int:
    """Local worker processes by default: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_launcher(launcher: str, profile, workers: int | None, slurm: list[str] | tuple[str, ...] = ()) -> dict | None:
    """Validate the launcher options; returns the loaded profile (``slurm``: its ``--slurm key=value``
    overrides) for slurm. ConfigError naming the fix."""
    check_choice("launcher", launcher, LAUNCHERS)
    if launcher == "local":
        check(profile is None, "profile", profile if isinstance(profile, str) else "(given)",
              "profiles are for --launcher slurm: add it, or drop --profile")
        check(not slurm, "slurm", " ".join(slurm), "--slurm overrides are for --launcher slurm")
        check(workers is None or workers >= 1, "workers", workers, "must be >= 1 process")
        return None
    check(workers is None, "workers", workers,
          "--workers is for --launcher local; on SLURM set array_parallelism in the profile")
    if isinstance(profile, dict):
        assert not slurm, "--slurm overrides apply when the profile is loaded"
        return profile
    return load_profile(profile, slurm)


def check_cluster(profile: dict) -> None:
    """Before submitting: sbatch exists, the controller answers, the profile's partition exists."""
    check(slurm.shutil.which("sbatch") is not None, "launcher", "slurm",
          "sbatch is not on PATH: run on a SLURM login node, or use --launcher local")
    known = slurm.partitions()
    if known is None:
        raise ConfigError("launcher", "slurm", "sinfo does not answer: is the controller up and $SLURM_CONF set? "
                                               "(`make slurm-up` starts the test cluster)")
    check(profile["partition"] in known, f"{profile['name']}.partition", profile["partition"],
          f"this cluster's partitions are {', '.join(known)}")


# --- SLURM through submitit ----------------------------------------------------------------------

def _submit_command(folder: Path, python: str) -> str:
    """The command submitit puts in the sbatch script (SlurmExecutor._submitit_command_str, submitit 1.5)."""
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_script(profile: dict, folder: Path, n_tasks: int, job_name: str = "ra3lab", nodes: int = 1) -> str:
    """The exact sbatch script an array of ``n_tasks`` would be submitted with, each task on ``nodes`` nodes
    (nothing is submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(folder).expanduser().absolute()
    params = executor_parameters(profile, job_name, nodes)
    return _make_sbatch_string(command=_submit_command(folder, python_command(profile)), folder=folder,
                               map_count=n_tasks if n_tasks > 1 else None, **params)


def _executor(profile: dict, folder: Path, job_name: str, nodes: int = 1):
    import submitit

    executor = submitit.SlurmExecutor(folder=folder, python=python_command(profile))
    try:
        executor.update_parameters(**executor_parameters(profile, job_name, nodes))
    except ValueError as error:
        raise ConfigError("profile", profile["name"], str(error).splitlines()[0]) from None
    return executor


def _error_line(text: str) -> str:
    """The last line of a traceback (``KeyError: 'x'``), from submitit's error or a log."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    tail = [line for line in lines if not line.startswith(("You can check", "or at paths", "- "))]
    return tail[-1] if tail else text.strip()[:300]


class SlurmBatch:
    """One array job; :meth:`wait` collects the outcomes."""

    def __init__(self, fn: Callable, kwargs_list: list[dict], profile: dict, folder: Path, job_name: str,
                 nodes: int = 1):
        from submitit.core.utils import FailedJobError

        executor = _executor(profile, folder, job_name, nodes)
        try:
            with executor.batch():
                jobs = [executor.submit(fn, **kwargs) for kwargs in kwargs_list]
        except FailedJobError as error:   # sbatch refused the script: nothing was submitted
            raise ConfigError("profile", profile["name"],
                              f"sbatch refused the array job: {_error_line(str(error))}") from None
        self.jobs = jobs
        self.job_ids: list[str] = [job.job_id for job in jobs]

    def _collect(self, i: int) -> Outcome:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        job = self.jobs[i]
        try:
            return Outcome(ok=True, result=job.results()[0], job_id=job.job_id)
        except (FailedJobError, UncompletedJobError) as error:  # the job raised: submitit hands back its traceback
            return Outcome(ok=False, error=_error_line(str(error)), job_id=job.job_id)

    def _lost(self, i: int) -> Outcome:
        """The outcome of a task that left the queue without a result file."""
        job_id = self.job_ids[i]
        state = slurm.final_states({job_id.split("_")[0]}).get(job_id, "state unknown: no accounting")
        log = self.jobs[i].paths.stderr
        text = log.read_text() if log.exists() else ""
        tail = _error_line(text) if text.strip() else "(no stderr)"
        return Outcome(ok=False, job_id=job_id,
                       error=f"job {job_id} ended ({state}) without a result (cancelled, killed or out of time?); "
                             f"last log line: {tail}")

    def wait(self, timeout_s: float | None = None,
             on_outcome: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
        """Outcomes in submission order. Ends when every task has written its result, or has been
        absent from squeue for LOST_AFTER_S (cancelled, killed, out of time: an error outcome), or
        after ``timeout_s`` seconds, or when squeue has not answered for SILENT_AFTER_S."""
        start = time.monotonic()
        outcomes: list[Outcome | None] = [None] * len(self.jobs)
        missing_since: dict[int, float] = {}   # task index -> first time squeue did not list it
        last_poll, last_answer = float("-inf"), start

        def finish(i: int, outcome: Outcome) -> None:
            outcomes[i] = outcome
            if on_outcome is not None:
                on_outcome(i, outcome)

        while True:
            now = time.monotonic()
            for i in [i for i, outcome in enumerate(outcomes) if outcome is None]:
                if self.jobs[i].paths.result_pickle.exists():
                    finish(i, self._collect(i))
                elif i in missing_since and now - missing_since[i] >= LOST_AFTER_S:
                    finish(i, self._lost(i))
            pending = [i for i, outcome in enumerate(outcomes) if outcome is None]
            if not pending:
                return _ended(outcomes)
            late = timeout_s is not None and now - start > timeout_s
            if late or now - last_answer > SILENT_AFTER_S:
                reason = (f"no result after waiting {timeout_s:.0f} s" if late else
                          f"squeue has not answered for {SILENT_AFTER_S} s")
                for i in pending:
                    finish(i, Outcome(ok=False, job_id=self.job_ids[i],
                                      error=f"{reason}; the job may still run: see `squeue -j {self.job_ids[i]}`"))
                return _ended(outcomes)
            if now - last_poll >= QUEUE_POLL_S:
                last_poll = now
                queue = slurm.queued_jobs()
                if queue is not None:
                    last_answer = now
                    for i in pending:
                        if self.job_ids[i] in queue:
                            missing_since.pop(i, None)
                        else:
                            missing_since.setdefault(i, now)
            time.sleep(POLL_S)


# --- local processes ---------------------------------------------------------------------------

def _quiet_worker() -> None:
    """Pool initializer: no progress bars from workers (they would interleave on one terminal)."""
    os.environ["TTY_COMPATIBLE"] = "0"


class LocalBatch:
    """A pool of ``workers`` spawned processes; :meth:`wait` collects the outcomes."""

    def __init__(self, fn: Callable, kwargs_list: list[dict], workers: int):
        context = multiprocessing.get_context("spawn")
        self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                           initializer=_quiet_worker)
        self.futures = [self.pool.submit(fn, **kwargs) for kwargs in kwargs_list]
        self.job_ids: list[str | None] = [None] * len(kwargs_list)

    def wait(self, timeout_s: float | None = None,
             on_outcome: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
        """Outcomes in submission order; after ``timeout_s`` seconds the unfinished calls are stopped
        (their worker processes terminated) and reported as errors."""
        index = {future: i for i, future in enumerate(self.futures)}
        outcomes: list[Outcome | None] = [None] * len(self.futures)
        try:
            for future in concurrent.futures.as_completed(self.futures, timeout=timeout_s):
                error = future.exception()
                if error is None:
                    outcome = Outcome(ok=True, result=future.result())
                elif isinstance(error, concurrent.futures.process.BrokenProcessPool):
                    outcome = Outcome(ok=False, error="its worker process died (killed?) before it finished")
                else:
                    outcome = Outcome(ok=False, error="".join(traceback.format_exception_only(error)).strip())
                outcomes[index[future]] = outcome
                if on_outcome is not None:
                    on_outcome(index[future], outcome)
        except concurrent.futures.TimeoutError:
            for i, ended in enumerate(outcomes):
                if ended is None:
                    stopped = Outcome(ok=False, error=f"stopped after {timeout_s:.0f} s without a result")
                    outcomes[i] = stopped
                    if on_outcome is not None:
                        on_outcome(i, stopped)
            for process in list((self.pool._processes or {}).values()):   # our own children, by handle
                process.terminate()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return _ended(outcomes)


# --- the entry points ---------------------------------------------------------------------------

def submit(fn: Callable, kwargs_list: list[dict], *, launcher: str = "local", profile: str | dict | None = None,
           folder: str | Path, workers: int | None = None, job_name: str = "ra3lab",
           nodes: int = 1) -> LocalBatch | SlurmBatch:
    """Start ``fn(**kwargs)`` for every kwargs: a process pool (``workers``, default the cores) or one
    SLURM array job with the resources of ``profile`` (a name in slurm/profiles/, a path or a loaded profile),
    each task on ``nodes`` nodes (one SLURM task per node). ``folder`` holds submitit's pickles and logs (SLURM
    only). Returns a batch to :meth:`wait` on."""
    check(len(kwargs_list) > 0, "kwargs_list", [], "nothing to launch")
    loaded = check_launcher(launcher, profile, workers)
    if launcher == "local":
        return LocalBatch(fn, kwargs_list, min(workers or default_workers(), len(kwargs_list)))
    assert loaded is not None, "check_launcher loads the profile for slurm"
    check_cluster(loaded)
    return SlurmBatch(fn, kwargs_list, loaded, Path(folder), job_name, nodes)


def launch(fn: Callable, kwargs_list: list[dict], *, launcher: str = "local", profile: str | dict | None = None,
           folder: str | Path, workers: int | None = None, timeout_s: float | None = None,
           on_outcome: Callable[[int, Outcome], None] | None = None, job_name: str = "ra3lab") -> list[Outcome]:
    """``fn(**kwargs)`` for each kwargs, locally or as one SLURM array job; waits at most ``timeout_s``
    seconds (None: until every call ended). ``on_outcome(i, outcome)`` is called as each one ends."""
    batch = submit(fn, kwargs_list, launcher=launcher, profile=profile, folder=folder, workers=workers,
                   job_name=job_name)
    return batch.wait(timeout_s=timeout_s, on_outcome=on_outcome)
