"""``ra3lab sweep``: plan a grid sweep, validate every point, launch the unfinished runs, aggregate.

A sweep directory ``<runs>/sweeps/<sweep>/<hash>/`` holds::

    sweep.yaml       the resolved spec: experiment, quick, fixed, grid, command-line overrides, points
    manifest.jsonl   one line per point: index, overrides, params (swept keys), run id, run_dir, last job id
    jobs/            submitit's folder (SLURM launches): sbatch scripts, pickles, logs per array task
    aggregate.csv    one row per run (see ra3lab.sweep.aggregate)

The runs themselves stay in ``<runs>/<experiment>/<run id>/``, shared with ``ra3lab run``. Launching
again skips done runs and runs whose job is still alive, and resubmits the rest (pending, failed,
interrupted), which resume from their checkpoints; ``failed_only`` resubmits only the failed ones.
A sweep over a stage experiment (one that consumes other runs, :mod:`ra3lab.stages`) launches the DAG of
every run its points need, each once, level by level (:mod:`ra3lab.sweep.dag`; ``stages.jsonl``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from ra3lab.config import compose_points
from ra3lab.errors import ConfigError, check
from ra3lab.execute import prepare, runs_root
from ra3lab.log import Meter, say
from ra3lab.runs import Run, atomic_write
from ra3lab.stages import Node, levels, order
from ra3lab.stages import plan as stage_plan
from ra3lab.sweep.aggregate import write_aggregate
from ra3lab.sweep.dag import launch_dag, node_states, tasks_per_level, to_launch, with_dependency, write_stages
from ra3lab.sweep.job import RunJob
from ra3lab.sweep.launch import SlurmBatch, check_cluster, check_launcher, default_workers, sbatch_script, submit
from ra3lab.sweep.profiles import executor_parameters
from ra3lab.sweep.spec import Point, SweepSpec, expand, load_spec, resolved, spec_hash
from ra3lab.sweep.status import STATES, Queue, count_line, read_manifest, read_stages, run_state


@dataclass
class Plan:
    """A sweep with every point composed (``configs[i]``); ``roots[i]`` is point i's run with the runs it consumes,
    ``runs[i]`` its run directory."""

    spec: SweepSpec
    points: list[Point]
    configs: list[DictConfig]
    roots: list[Node]
    runs: list[Run]
    sweep_dir: Path

    @property
    def staged(self) -> bool:
        """Whether the points consume other runs (a DAG of stages)."""
        return any(root.upstream for root in self.roots)


def plan(name: str, overrides: list[str] | tuple[str, ...] = (), quick: bool = False) -> Plan:
    """Load and expand sweep ``name``: every point's config is composed (unknown keys fail here) and
    gets its run directory; nothing is written. :func:`validate` checks points before they launch.
    quick: start from the experiment's quick profile whatever the sweep file says."""
    spec = load_spec(name, overrides)
    if quick:
        spec = replace(spec, quick=True)
    points = expand(spec)
    configs = compose_points(spec.experiment, [list(point.overrides) for point in points], quick=spec.quick)
    for config in configs:
        check("runtime" not in config or config.runtime.processes * config.runtime.nodes == 1, "runtime.processes",
              OmegaConf.select(config, "runtime.processes"), "a sweep runs each of its runs in one process (a run "
              "over several is `ra3lab run ... runtime.processes=N`): set runtime.processes=1 runtime.nodes=1")
    roots = [stage_plan(spec.experiment, config, validate=False) for config in configs]
    seen: dict[str, int] = {}
    for i, (point, root) in enumerate(zip(points, roots)):
        if root.upstream:       # stages: points that differ only in keys a run ignores share it (references once)
            continue
        check(root.id not in seen, "grid", " ".join(point.overrides),
              f"points {seen.get(root.id)} and {i} resolve to the same config (run {root.run_id}): drop the duplicate")
        seen[root.id] = i
    if any(root.upstream for root in roots):
        _check_axes(spec.experiment, points, roots)
    return Plan(spec, points, configs, roots, [root.run() for root in roots],
                runs_root() / "sweeps" / name / spec_hash(spec, points))


def _check_axes(experiment: str, points: list[Point], roots: list[Node]) -> None:
    """ConfigError for a swept key that changes no run of the stages' DAG (no stage reads it): its values would
    all give the same runs."""
    runs = [frozenset(node.id for node in order([root])) for root in roots]
    for key in points[0].params:
        if len({str(point.params[key]) for point in points}) < 2:
            continue
        same_rest: dict[str, set[frozenset[str]]] = {}
        for point, found in zip(points, runs):
            rest = json.dumps({k: v for k, v in point.params.items() if k != key}, sort_keys=True, default=str)
            same_rest.setdefault(rest, set()).add(found)
        check(any(len(found) > 1 for found in same_rest.values()), "grid", key,
              f"no stage of {experiment} depends on {key}: every value gives the same runs; drop that axis or "
              "sweep a key a stage reads (`ra3lab show <run>` lists a run's config)")


def validate(the_plan: Plan, indices: list[int]) -> None:
    """Check the points at ``indices`` with their study (``prepare``): ConfigError naming the point."""
    for i in indices:
        try:
            prepare(the_plan.spec.experiment, the_plan.configs[i])
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
              timeout_s: float | None = None, slurm: list[str] | tuple[str, ...] = (), quick: bool = False) -> dict:
    """Plan sweep ``name`` and launch its unfinished runs (see the module docstring); returns a summary:
    sweep_dir, counts by state after the launch, the launched indices, failures with their errors,
    and for ``dry_run`` every run with its state and the sbatch script, with nothing written or submitted.
    ``slurm``: ``--slurm key=value`` overrides of the profile."""
    loaded = check_launcher(launcher, profile, workers, slurm)
    check(timeout_s is None or timeout_s > 0, "timeout", timeout_s, "must be > 0 seconds")
    the_plan = plan(name, overrides, quick)
    before, selected = select(the_plan, failed_only)
    validate(the_plan, selected)          # a completed sweep is skipped without building any family
    if the_plan.staged:
        return _run_staged(the_plan, [the_plan.roots[i] for i in selected], launcher=launcher, profile=loaded,
                           workers=workers, dry_run=dry_run, timeout_s=timeout_s)
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


def _run_staged(the_plan: Plan, roots: list[Node], *, launcher: str, profile: dict | None, workers: int | None,
                dry_run: bool, timeout_s: float | None) -> dict:
    """Launch the missing runs of the DAG of ``roots`` (the unfinished points), each once, level by level; the
    summary lists every stage run (id, level, state, action) and, per point, its state after the launch."""
    name, sweep_dir = the_plan.spec.name, the_plan.sweep_dir
    nodes = order(the_plan.roots)
    wanted = {node.id for node in order(roots)}
    states = node_states(nodes)
    selected = [node for node in to_launch(nodes, states) if node.id in wanted]
    level = levels(nodes)
    previous = {entry["id"]: entry.get("job_id") for entry in read_stages(sweep_dir)}
    stage_rows = [{"id": node.id, "experiment": node.experiment, "level": level[node.id], **states[node.id],
                   "action": "launch" if node in selected else "skip"} for node in nodes]
    summary: dict = {"sweep": name, "experiment": the_plan.spec.experiment, "sweep_dir": str(sweep_dir),
                     "launcher": launcher, "n_runs": len(the_plan.roots), "n_stage_runs": len(nodes),
                     "launch": [node.id for node in selected], "stages": stage_rows}
    if dry_run:
        by_level = sorted({level[node.id] for node in selected})
        summary.update(dry_run=True, line=count_line([states[node.id]["state"] for node in nodes]),
                       levels={depth: [node.id for node in selected if level[node.id] == depth] for depth in by_level})
        if launcher == "slurm":
            assert profile is not None, "check_launcher loads the profile for slurm"
            summary["tasks"] = {depth: tasks_per_level(profile, len(summary["levels"][depth])) for depth in by_level}
            summary["sbatch"] = {f"level {depth}": sbatch_script(
                with_dependency(profile, [f"<level {d} array>" for d in by_level if d < depth]), sweep_dir / "jobs" /
                "%j", summary["tasks"][depth], f"ra3lab-{name}-L{depth}") for depth in by_level}
        return summary
    if launcher == "slurm" and selected:
        assert profile is not None, "check_launcher loads the profile for slurm"
        check_cluster(profile)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(sweep_dir / "sweep.yaml", yaml.safe_dump(resolved(the_plan.spec, the_plan.points), sort_keys=False))
    atomic_write(sweep_dir / "manifest.jsonl", _manifest(the_plan, {}))
    write_stages(sweep_dir, nodes, previous)
    failures = []
    if selected:
        say(f"sweep {name}", f"launching {len(selected)} of {len(nodes)} stage runs ({launcher}); "
                             f"follow with: ra3lab status {sweep_dir}")

        def record(ids: list[str], job_ids: list[str | None]) -> None:
            previous.update(zip(ids, job_ids))
            write_stages(sweep_dir, nodes, previous)

        outcomes = launch_dag(nodes, selected, launcher=launcher, profile=profile, workers=workers,
                              folder=sweep_dir / "jobs" / "%j", job_name=f"ra3lab-{name}", runs_root=runs_root(),
                              timeout_s=timeout_s, on_submit=record)
        failures = [{"id": node_id, "error": outcome.error} for node_id, outcome in outcomes.items() if not outcome.ok]
    else:
        say(f"sweep {name}", "nothing to launch: every stage run is done or running")
    after = node_states(nodes)
    for row in stage_rows:
        row.update(after[row["id"]])
        row.pop("action")
    runs = [{"index": i, "params": point.params, "run_id": root.run_id, "run_dir": str(root.path), **after[root.id]}
            for i, (point, root) in enumerate(zip(the_plan.points, the_plan.roots))]
    point_states = [run["state"] for run in runs]
    summary.update(runs=runs, counts={s: point_states.count(s) for s in STATES}, failures=failures,
                   line=count_line(point_states), aggregate=str(write_aggregate(sweep_dir)))
    return summary
