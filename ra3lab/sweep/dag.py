"""A sweep over stage experiments (:mod:`ra3lab.stages`) as a DAG of stage runs, each computed once.

The sweep's points are the last stages; every run they consume is collected once (two points that share a
base model share its run) and given a level: 0 for a run that consumes nothing, else one more than its
highest upstream. On SLURM, each level's missing runs are ONE array job whose sbatch ``dependency`` is
``afterok`` on the arrays of the lower levels it consumes from, all submitted at once, with
``--kill-on-invalid-dep=yes`` so that the dependants of a failed run leave the queue instead of waiting
forever. A level never has more array tasks than may run at once (the profile's ``array_parallelism``): each
task (:class:`LevelTask`) executes its share of the level's runs one after another in one process, which pays
Python's and torch's start once, then any run of the level that no task has started. Locally, the levels run
one after another on the process pool, and a run whose upstream failed is not started. Done runs are never
launched again: relaunching after a failure runs only what is missing.

``stages.jsonl`` in the sweep directory lists every run of the DAG (id, experiment, level, upstream ids, the
job that last ran it); ``ra3lab status`` reads it to show per-stage progress, and a run that waits on a
failed upstream as ``blocked: <upstream id> failed``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import submitit
from omegaconf import OmegaConf

from ra3lab.log import say
from ra3lab.runs import atomic_write, run_id
from ra3lab.stages import Node, levels
from ra3lab.sweep.launch import Outcome, SlurmBatch, submit
from ra3lab.sweep.status import Queue, dag_states, run_state

KILL_ON_INVALID_DEPENDENCY = {"kill-on-invalid-dep": "yes"}   # sbatch: cancel a job whose dependency failed


class StageJob(submitit.helpers.Checkpointable):
    """``StageJob()(experiment, config, runs_root)`` executes one stage run from its stored config (upstream ids
    included); a preempted SLURM task is requeued and resumes from the run's checkpoint."""

    def __call__(self, experiment: str, config: dict, runs_root: str) -> dict:
        import os

        os.environ["RA3LAB_RUNS"] = str(runs_root)
        from ra3lab.execute import execute_node

        summary = execute_node(experiment, OmegaConf.create(config))
        return {"run_dir": summary["run_dir"], "state": "done", "cached": bool(summary.get("cached"))}


class LevelTask(submitit.helpers.Checkpointable):
    """``LevelTask()(runs, share, shares, runs_root)``: one of the ``shares`` array tasks of a level. It executes
    its share of ``runs`` ({experiment, config} each: every ``shares``-th from ``share``), then, when the tasks are
    fewer than the runs, every other run of the level that no task has started; a run that fails does not stop
    the others, and the task fails at the end if one did (so that ``afterok`` holds the next level). A requeued
    task skips the runs already done and resumes the interrupted one from its checkpoint."""

    def __call__(self, runs: list[dict], share: int, shares: int, runs_root: str) -> dict:
        os.environ["RA3LAB_RUNS"] = str(runs_root)
        from ra3lab.execute import execute_node

        own = runs[share::shares]
        others = [run for i, run in enumerate(runs) if i % shares != share] if shares < len(runs) else []
        ran, failed = [], []
        for run in own + others:
            config = OmegaConf.create(run["config"])
            path = Path(runs_root) / run["experiment"] / run_id(config)
            if run in others and (path / "status.json").exists():        # started (or done) by another task
                continue
            try:
                execute_node(run["experiment"], config)
                ran.append(str(path))
            except Exception as error:                                      # noqa: BLE001 - recorded in its run
                failed.append(f"{run['experiment']}/{path.name}: {type(error).__name__}: {error}".splitlines()[0])
        if failed:
            raise RuntimeError(f"{len(failed)} of the task's runs failed: " + "; ".join(failed))
        return {"runs": ran}


def tasks_per_level(profile: dict, n_runs: int) -> int:
    """Array tasks for a level of ``n_runs`` runs: at most the profile's ``array_parallelism`` (all at once)."""
    limit = profile.get("array_parallelism")
    return min(n_runs, int(limit)) if limit else n_runs


def node_states(nodes: list[Node], queue: Queue | None = None) -> dict[str, dict]:
    """Each node's state as ``ra3lab status`` shows it (:func:`~ra3lab.sweep.status.dag_states`)."""
    from ra3lab.execute import runs_root

    entries = [{"id": node.id, "upstream": [up.id for up in node.upstream.values()]} for node in nodes]
    return dag_states(entries, runs_root(), queue)


def write_stages(sweep_dir: Path, nodes: list[Node], job_ids: dict[str, str | None]) -> None:
    """``stages.jsonl``: one line per run of the DAG."""
    level = levels(nodes)
    atomic_write(sweep_dir / "stages.jsonl", "".join(
        json.dumps({"id": node.id, "experiment": node.experiment, "level": level[node.id],
                    "upstream": sorted({up.id for up in node.upstream.values()}), "job_id": job_ids.get(node.id)})
        + "\n" for node in nodes))


def to_launch(nodes: list[Node], states: dict[str, dict]) -> list[Node]:
    """The runs to (re)start: pending, failed, blocked and interrupted ones, never a done or running one."""
    return [node for node in nodes if states[node.id]["state"] in ("pending", "failed", "blocked", "interrupted")]


def _kwargs(node: Node, runs_root: Path) -> dict:
    return {"experiment": node.experiment, "config": OmegaConf.to_container(node.config, resolve=True),
            "runs_root": str(runs_root)}


def launch_dag(nodes: list[Node], selected: list[Node], *, launcher: str, profile: dict | None, workers: int | None,
               folder: Path, job_name: str, runs_root: Path, timeout_s: float | None,
               on_submit=None) -> dict[str, Outcome]:
    """Run ``selected`` (a subset of ``nodes``, upstream first) level by level; {node id: outcome}.

    SLURM: one array per level, submitted at once with afterok dependencies; locally: one pool per level, and a
    run whose upstream did not end done is not started (its outcome says it is blocked). ``on_submit(ids, job
    ids)`` is called after each submission (to record the jobs).
    """
    level = levels(nodes)
    by_level: dict[int, list[Node]] = {}
    for node in selected:
        by_level.setdefault(level[node.id], []).append(node)
    if launcher == "slurm":
        return _launch_slurm(by_level, profile, folder, job_name, runs_root, timeout_s, on_submit)
    outcomes: dict[str, Outcome] = {}
    for depth in sorted(by_level):
        ready = []
        for node in by_level[depth]:
            failed = next((up.id for up in node.upstream.values() if up.id in outcomes and not outcomes[up.id].ok),
                          None)
            if failed is not None:
                outcomes[node.id] = Outcome(ok=False, error=f"blocked: {failed} failed")
            else:
                ready.append(node)
        if not ready:
            continue
        say("sweep", f"stage level {depth}: {len(ready)} run(s) ({', '.join(sorted({n.experiment for n in ready}))})")
        batch = submit(StageJob(), [_kwargs(node, runs_root) for node in ready], launcher="local", folder=folder,
                       workers=workers, job_name=job_name)
        for node, outcome in zip(ready, batch.wait(timeout_s=timeout_s)):
            outcomes[node.id] = outcome
    return outcomes


def with_dependency(profile: dict, arrays: list[str]) -> dict:
    """``profile`` whose jobs start only after every job of ``arrays`` ended well (sbatch
    ``--dependency=afterok:<a>:<b>``) and are cancelled when one of them failed."""
    additional = {**(profile.get("additional") or {}), **KILL_ON_INVALID_DEPENDENCY}
    if arrays:
        additional["dependency"] = f"afterok:{':'.join(arrays)}"
    return {**profile, "additional": additional}


def _launch_slurm(by_level: dict[int, list[Node]], profile: dict | None, folder: Path, job_name: str,
                  runs_root: Path, timeout_s: float | None, on_submit) -> dict[str, Outcome]:
    assert profile is not None, "check_launcher loads the profile for slurm"
    array_of: dict[str, str] = {}                       # node id -> the array job that computes it
    task_of: dict[str, str] = {}                        # node id -> the array task whose share it is
    batches: list[tuple[list[Node], SlurmBatch]] = []
    for depth in sorted(by_level):
        ready = by_level[depth]
        needed = sorted({array_of[up.id] for node in ready for up in node.upstream.values() if up.id in array_of})
        shares = tasks_per_level(profile, len(ready))
        runs = [{"experiment": node.experiment, "config": OmegaConf.to_container(node.config, resolve=True)}
                for node in ready]
        batch = submit(LevelTask(), [{"runs": runs, "share": share, "shares": shares, "runs_root": str(runs_root)}
                                     for share in range(shares)],
                       launcher="slurm", profile=with_dependency(profile, needed), folder=folder,
                       job_name=f"{job_name}-L{depth}")
        assert isinstance(batch, SlurmBatch), "launcher slurm gives a SlurmBatch"
        array = batch.job_ids[0].split("_")[0]
        say("sweep", f"stage level {depth}: array job {array} of {shares} task(s) for {len(ready)} run(s)"
                     + (f", after {', '.join(needed)}" if needed else ""))
        array_of.update({node.id: array for node in ready})
        task_of.update({node.id: batch.job_ids[i % shares] for i, node in enumerate(ready)})
        batches.append((ready, batch))
        if on_submit is not None:
            on_submit([node.id for node in ready], [task_of[node.id] for node in ready])
    outcomes: dict[str, Outcome] = {}
    for ready, batch in batches:
        tasks = {outcome.job_id: outcome for outcome in batch.wait(timeout_s=timeout_s)}
        for node in ready:
            state, task = run_state(node.path), tasks.get(task_of[node.id])
            outcomes[node.id] = (Outcome(ok=True, result={"run_dir": str(node.path)}, job_id=task_of[node.id])
                                 if state["state"] == "done" else
                                 Outcome(ok=False, error=state["error"] or (task.error if task else None)
                                         or f"the run ended {state['state']}", job_id=task_of[node.id]))
    return outcomes
