"""The state of each run of a sweep, as a user should read it.

A run's status.json says what its job last wrote (pending, running, failed, done); a job that was
cancelled, killed or lost its node cannot update it. So "running" is checked (:func:`job_alive`): against
squeue (SLURM job id) or the local process (same host), and shows as "interrupted" when that job is gone. A
run stopped by a signal (SystemExit from submitit's preemption handler, KeyboardInterrupt) is
"interrupted" too, or "running" again while its requeued SLURM job is in the queue.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from ra3lab.runs import Run
from ra3lab.sweep import slurm

STATES = ("done", "running", "interrupted", "failed", "blocked", "pending")   # blocked: an upstream run failed
STOPPED = ("SystemExit", "KeyboardInterrupt")   # errors of a run stopped from outside, not by a bug


class Queue:
    """squeue's answer, asked at most once and only when a state needs it."""

    def __init__(self):
        self._jobs, self._asked = None, False

    def __call__(self) -> dict[str, str] | None:
        if not self._asked:
            self._jobs, self._asked = slurm.queued_jobs(), True
        return self._jobs


def job_alive(record: dict | None, queue: Queue) -> bool | None:
    """Whether the job that wrote ``record`` ({"host", "pid", "slurm_job_id"}, as status.json and a tuning
    worker hold it) still runs: its SLURM job is in squeue, else its process on this host lives; None
    when neither can be checked (another host, squeue does not answer). A requeued SLURM job is alive."""
    if not record:
        return False
    jobs = queue() if record.get("slurm_job_id") else None
    if jobs is not None:
        return str(record["slurm_job_id"]) in jobs
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return None
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(path: Path, queue: Queue | None = None) -> dict:
    """{"state": one of STATES, "error": one line or None, "job": SLURM job id or pid, "verified": bool}.

    ``verified`` is False for a "running" run whose job could not be checked (another host, no squeue).
    """
    queue = queue or Queue()
    status = Run(Path(path), OmegaConf.create()).status()   # reading the state needs no config
    state, error = status["state"], status.get("error")
    job = status.get("slurm_job_id") or (f"pid {status['pid']}" if status.get("pid") else None)
    verified = True
    if state == "running":
        alive = job_alive(status, queue)
        verified = alive is not None
        state = "interrupted" if alive is False else "running"
    elif state == "failed" and (error or "").split(":")[0] in STOPPED:
        requeued = bool(status.get("slurm_job_id")) and str(status["slurm_job_id"]) in (queue() or {})
        state = "running" if requeued else "interrupted"
    return {"state": state, "error": error if state in ("failed", "interrupted") else None, "job": job,
            "verified": verified}


def runs_root_of(sweep_dir: Path) -> Path:
    """The runs root a sweep directory <runs root>/sweeps/<sweep>/<hash> lies in."""
    return Path(sweep_dir).resolve().parents[2]


def dag_states(entries: list[dict], root: Path, queue: Queue | None = None) -> dict[str, dict]:
    """The :func:`run_state` of each run of a DAG, entries ``{"id", "upstream": [ids]}`` upstream first (ids
    relative to the runs root ``root``); a run not done that consumes, directly or not, a failed run is
    ``blocked``, its error ``blocked: <that run's id> failed``."""
    queue = queue or Queue()
    states: dict[str, dict] = {}
    for entry in entries:
        state = run_state(Path(root) / entry["id"], queue)
        if state["state"] not in ("done", "running"):
            for upstream in entry["upstream"]:
                above = states.get(upstream, {})
                if above.get("state") in ("failed", "blocked"):
                    cause = above.get("cause") or upstream
                    state = {**state, "state": "blocked", "cause": cause, "error": f"blocked: {cause} failed"}
                    break
        states[entry["id"]] = state
    return states


def read_stages(sweep_dir: Path) -> list[dict]:
    """The stage runs of a sweep over stages, one dict per stages.jsonl line ([] for any other sweep)."""
    path = Path(sweep_dir) / "stages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_manifest(sweep_dir: Path) -> list[dict]:
    """The points of a sweep directory, one dict per manifest.jsonl line."""
    path = Path(sweep_dir) / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_path(sweep_dir: Path, entry: dict) -> Path:
    """Where a manifest entry's run lives: <runs root>/<experiment>/<run id>, the runs root being the
    folder that holds sweeps/ (so a moved runs folder still resolves); else the recorded run_dir."""
    local = runs_root_of(sweep_dir) / entry["experiment"] / entry["run_id"]
    return local if local.exists() or not Path(entry["run_dir"]).exists() else Path(entry["run_dir"])


def count_line(states: list[str]) -> str:
    """'12 runs: 9 done, 1 running, 1 failed, 1 pending' (states in a fixed order, zeros left out)."""
    counts = Counter(states)
    parts = [f"{counts[state]} {state}" for state in STATES if counts[state]]
    return f"{len(states)} run{'s' if len(states) != 1 else ''}: {', '.join(parts) or 'none'}"


def sweep_status(sweep_dir: Path) -> dict:
    """Every run of the sweep in ``sweep_dir`` with its state, and the counts."""
    sweep_dir = Path(sweep_dir)
    queue = Queue()
    runs = []
    for entry in read_manifest(sweep_dir):
        state = run_state(run_path(sweep_dir, entry), queue)
        if state["state"] == "pending" and entry.get("job_id"):
            queued = entry["job_id"] in (queue() or {})
            state["job"] = f"{entry['job_id']} ({'queued' if queued else 'gone'})"
        runs.append({"index": entry["index"], "params": entry["params"], "run_id": entry["run_id"],
                     "run_dir": str(run_path(sweep_dir, entry)), **state})
    summary: dict = {"sweep_dir": str(sweep_dir), "runs": runs}
    entries = read_stages(sweep_dir)
    if entries:
        dag = dag_states(entries, runs_root_of(sweep_dir), queue)
        for run, entry in zip(runs, read_manifest(sweep_dir)):
            run.update(dag[f"{entry['experiment']}/{entry['run_id']}"])
        summary["stages"] = stage_progress(entries, dag)
        summary["stage_runs"] = [{**entry, **dag[entry["id"]]} for entry in entries]
    states = [run["state"] for run in runs]
    return {**summary, "counts": {s: states.count(s) for s in STATES}, "line": count_line(states)}


def stage_progress(entries: list[dict], states: dict[str, dict]) -> dict[str, str]:
    """Per stage experiment, in level order, the count line of its runs' states."""
    by_stage: dict[str, list[str]] = {}
    for entry in sorted(entries, key=lambda entry: entry.get("level", 0)):
        by_stage.setdefault(entry["experiment"], []).append(states[entry["id"]]["state"])
    return {stage: count_line(found) for stage, found in by_stage.items()}


STYLE = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red", "blocked": "magenta",
         "pending": "dim"}


def render_stage_runs(rows: list[dict], line: str, title: str) -> None:
    """Print a staged sweep's stage runs (level, id, state, what the launch does with it), then the count line."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("level", "stage run", "state", "action"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row["level"]), row["id"], f"[{STYLE[row['state']]}]{row['state']}[/]", row["action"])
    _print(table, line)


def _print(table, line: str) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:   # piped or captured: do not wrap at 80 columns
        console = Console(width=200)
    console.print(table)
    console.print(line, highlight=False)


def render(runs: list[dict], line: str, title: str | None = None, extra: dict | None = None) -> None:
    """Print the runs as a rich table on stdout, then the count line. ``extra`` adds columns: {name: values}."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("#", "overrides", "run id", "state", "job", *(extra or {}), "error"):
        table.add_column(column, overflow="fold")
    for i, run in enumerate(runs):
        params = " ".join(f"{key}={value}" for key, value in run["params"].items())
        state = run["state"] + ("" if run.get("verified", True) else "?")
        table.add_row(str(run["index"]), params, run["run_id"], f"[{STYLE[run['state']]}]{state}[/]",
                      str(run.get("job") or ""), *(str(values[i]) for values in (extra or {}).values()),
                      (run.get("error") or "").splitlines()[0][:200] if run.get("error") else "")
    _print(table, line)
