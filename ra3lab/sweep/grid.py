"""``ra3lab sweep``: plan a grid sweep, validate every point, launch the unfinished runs, aggregate.

A sweep directory ``<runs>/sweeps/<sweep>/<hash>/`` holds::

    sweep.yaml       the resolved spec: experiment, quick, fixed, grid, command-line overrides, points
    manifest.jsonl   one line per point: index, overrides, params (swept keys), run id, run_dir, last job id
    jobs/            submitit's folder (SLURM launches): sbatch scripts, pickles, logs per array task
    aggregate.csv    one row per run (see ra3lab.sweep.aggregate)

The runs themselves stay in ``<runs>/<experiment>/<run id>/``, shared with ``ra3lab run``. Launching
again skips done runs and runs whose job is still alive, and resubmits the rest (pending, failed,
interrupted), which resume from their checkpoints; ``failed_only`` resubmits only the failed ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from ra3lab.config import compose_points
from ra3lab.errors import ConfigError, check
from ra3lab.execute import prepare, runs_root
from ra3lab.log import Meter, say
from ra3lab.runs import Run, atomic_write, run_id
from ra3lab.sweep.aggregate import write_aggregate
from ra3lab.sweep.job import RunJob
from ra3lab.sweep.launch import SlurmBatch, check_cluster, check_launcher, default_workers, sbatch_script, submit
from ra3lab.sweep.profiles import executor_parameters
from ra3lab.sweep.spec import Point, SweepSpec, expand, load_spec, resolved, spec_hash
from ra3lab.sweep.status import STATES, Queue, count_line, read_manifest, run_state


@dataclass
class Plan:
    """A sweep with every point composed and validated; ``runs[i]`` is point i's run directory."""

    spec: SweepSpec
    points: list[Point]
    runs: list
    sweep_dir: Path


def plan(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Plan:
    """Load and expand sweep ``name``: every point's config is composed (unknown keys fail here) and
    gets its run directory; nothing is written. :func:`validate` checks points before they launch."""
    spec = load_spec(name, overrides)
    points = expand(spec)
    configs = compose_points(spec.experiment, [list(point.overrides) for point in points], quick=spec.quick)
    runs: list[Run] = []
    seen: dict[Path, int] = {}
    for i, (point, config) in enumerate(zip(points, configs)):
        run = Run(runs_root() / spec.experiment / run_id(config), config)
        check(run.path not in seen, "grid", " ".join(point.overrides),
              f"points {seen.get(run.path)} and {i} resolve to the same config (run {run.path.name}): "
              "drop the duplicate")
        seen[run.path] = i
        runs.append(run)
    return Plan(spec, points, runs, runs_root() / "sweeps" / name / spec_hash(spec, points))


def validate(the_plan: Plan, indices: list[int]) -> None:
    """Check the points at ``indices`` with their study (``prepare``): ConfigError naming the point."""
    for i in indices:
        try:
            prepare(the_plan.spec.experiment, the_plan.runs[i].config)
        except ConfigError as error:
            raise ConfigError(error.field, error.value,
                              f"{error.valid} (sweep point {i}: {' '.join(the_plan.points[i].overrides)})") from None


def _manifest(plan: Plan, job_ids: dict[int, str | None]) -> str:
    return "".join(json.dumps({"index": i, "overrides": list(point.overrides), "params": point.params,
                               "experiment": plan.spec.experiment, "run_id": run.path.name, "run_dir": str(run.path),
                               "job_id": job_ids.get(i)}) + "\n"
                   for i, (point, run) in enumerate(zip(plan.points, plan.runs)))


def _progress(plan: Plan, selected: list[int]):
    """``on_outcome(k, outcome)``: a line per finished run with the sweep's done/total, rate and ETA."""
    meter = Meter(len(selected))

    def report(k: int, outcome) -> None:
        meter.done += 1
        i = selected[k]
        params = " ".join(f"{key}={value}" for key, value in plan.points[i].params.items())
        what = "done" if outcome.ok else f"FAILED: {outcome.error}"
        say(f"sweep {plan.spec.name}", f"{meter.line()}: #{i} {params}: {what}")
    return report


def select(the_plan: Plan, failed_only: bool = False) -> tuple[list[dict], list[int]]:
    """Each run's state, and the indices to launch: pending, failed and interrupted runs (only failed
    ones with ``failed_only``); never a done run, a running one, or one whose last job is still queued."""
    manifest = the_plan.sweep_dir / "manifest.jsonl"
    previous = {entry["index"]: entry.get("job_id") for entry in read_manifest(the_plan.sweep_dir)} \
        if manifest.exists() else {}
    queue = Queue()
    states = [run_state(run.path, queue) for run in the_plan.runs]
    for i, state in enumerate(states):
        if previous.get(i):
            state["last_job"] = previous[i]
            if state["state"] == "pending" and previous[i] in (queue() or {}):   # submitted, not started yet
                state["job"] = f"{previous[i]} (queued)"
    wanted = ("failed",) if failed_only else ("pending", "failed", "interrupted")
    selected = [i for i, state in enumerate(states)
                if state["state"] in wanted and not str(state.get("job") or "").endswith("(queued)")]
    return states, selected


def run_sweep(name: str, overrides: list[str] | tuple[str, ...] = (), *, launcher: str = "local",
              profile: str | None = None, workers: int | None = None, dry_run: bool = False, failed_only: bool = False,
              timeout_s: float | None = None, slurm: list[str] | tuple[str, ...] = ()) -> dict:
    """Plan sweep ``name`` and launch its unfinished runs (see the module docstring); returns a summary:
    sweep_dir, counts by state after the launch, the launched indices, failures with their errors,
    and for ``dry_run`` every run with its state and the sbatch script, with nothing written or submitted.
    ``slurm``: ``--slurm key=value`` overrides of the profile."""
    loaded = check_launcher(launcher, profile, workers, slurm)
    check(timeout_s is None or timeout_s > 0, "timeout", timeout_s, "must be > 0 seconds")
    the_plan = plan(name, overrides)
    before, selected = select(the_plan, failed_only)
    validate(the_plan, selected)          # a completed sweep is skipped without building any family
    job_ids = {i: state.pop("last_job", None) for i, state in enumerate(before)}
    runs = [{"index": i, "params": point.params, "overrides": list(point.overrides), "run_id": run.path.name,
             "run_dir": str(run.path), **before[i], "action": "launch" if i in selected else "skip"}
            for i, (point, run) in enumerate(zip(the_plan.points, the_plan.runs))]
    summary = {"sweep": name, "experiment": the_plan.spec.experiment, "sweep_dir": str(the_plan.sweep_dir),
               "launcher": launcher, "n_runs": len(runs), "launch": selected}
    sweep_dir, job_name = the_plan.sweep_dir, f"ra3lab-{name}"
    jobs_folder = sweep_dir / "jobs" / "%j"
    if dry_run:
        summary.update(dry_run=True, runs=runs, line=count_line([state["state"] for state in before]))
        if launcher == "slurm":
            assert loaded is not None, "check_launcher loads the profile for slurm"
            summary["sbatch"] = {"parameters": executor_parameters(loaded, job_name), "array_size": len(selected),
                                 "script": (sbatch_script(loaded, jobs_folder, len(selected), job_name)
                                            if selected else None)}
        else:
            summary["workers"] = min(workers or default_workers(), max(len(selected), 1))
        return summary

    if launcher == "slurm" and selected:
        assert loaded is not None, "check_launcher loads the profile for slurm"
        check_cluster(loaded)   # sbatch, a controller that answers, the partition: before anything is written
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(sweep_dir / "sweep.yaml", yaml.safe_dump(resolved(the_plan.spec, the_plan.points), sort_keys=False))
    atomic_write(sweep_dir / "manifest.jsonl", _manifest(the_plan, job_ids))
    failures = []
    if selected:
        say(f"sweep {name}", f"launching {len(selected)} of {len(runs)} runs ({launcher}); "
                             f"follow with: ra3lab status {sweep_dir}")
        kwargs = [{"experiment": the_plan.spec.experiment, "overrides": list(the_plan.points[i].overrides),
                   "quick": the_plan.spec.quick, "runs_root": str(runs_root())} for i in selected]
        batch = submit(RunJob(), kwargs, launcher=launcher, profile=loaded, folder=jobs_folder, workers=workers,
                       job_name=job_name)
        job_ids.update(zip(selected, batch.job_ids))
        atomic_write(sweep_dir / "manifest.jsonl", _manifest(the_plan, job_ids))
        if isinstance(batch, SlurmBatch):
            say(f"sweep {name}", f"submitted array job {batch.job_ids[0].split('_')[0]}")
        try:
            outcomes = batch.wait(timeout_s=timeout_s, on_outcome=_progress(the_plan, selected))
        except KeyboardInterrupt:
            if launcher == "slurm":
                say(f"sweep {name}", f"stopped waiting; the array job keeps running: ra3lab status {sweep_dir}")
            raise
        failures = [{"index": i, "overrides": list(the_plan.points[i].overrides), "error": outcome.error}
                    for i, outcome in zip(selected, outcomes) if not outcome.ok]
    else:
        say(f"sweep {name}", f"nothing to launch: {count_line([state['state'] for state in before])}")
    aggregate_path = write_aggregate(sweep_dir)
    after, _ = select(the_plan)
    for run, state in zip(runs, after):
        state.pop("last_job", None)
        run.update(state)
        run.pop("action")
    states = [state["state"] for state in after]
    summary.update(runs=runs, counts={s: states.count(s) for s in STATES}, failures=failures,
                   line=count_line(states), aggregate=str(aggregate_path))
    return summary
