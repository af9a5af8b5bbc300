"""`ra3lab bench pipeline`: a sweep of the RA3 -> RLVR pipeline on SLURM, stage by stage against one job per
point, in one benchmark run on the same cluster.

The workload is sweeps/bench_pipeline.yaml: RLVR from the RA3 arm at 2 penalties c x 2 RLVR seeds at a tiny
scale. Ours launches it as the DAG of stage runs (one pre-trained base, one mid-training run per c, one RLVR run
per point: :mod:`ra3lab.sweep.dag`). The peer is what a user does without stages: Hydra's ``--multirun``
through hydra-submitit-launcher, one job per point that computes the point's whole chain (base, arm, RLVR) in
its own run store, as the single-process studies did. Both use the same profile. Each side's compute is the
CPU time SLURM accounted to its jobs (sacct ``TotalCPU``; needs slurmdbd, which `make slurm-up` starts), and
its wall time is from launch to the last result. Each point's held-out pass@1 curve must be the same on both
sides.

Units: seconds; ``compute_ratio`` = our CPU seconds / the peer's (target <= 0.5), ``upstream_runs`` the base
models and mid-training runs each side computed (ours: exactly one per distinct config). Every job pays a fixed
start (Python, torch, transformers and TRL imports: 6-8 CPU seconds here). Ours runs 5 jobs against the peer's 4
(one pre-training job, then per level no more tasks than run at once: 2 mid-training, 2 RLVR tasks of 2 runs),
so with a start cost O, pre-training P and one RLVR run R, ours costs at most half the peer's when
P >= 3 O + 2 R (mid-training cancels out: ours trains each arm once, the peer once per seed, 2 seeds).
``pretrain_steps`` sets P.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from ra3lab.config import project_root
from ra3lab.errors import check
from ra3lab.execute import runs_at
from ra3lab.sweep.grid import plan, run_sweep
from ra3lab.sweep.launch import check_cluster
from ra3lab.sweep.profiles import load_profile
from ra3lab.sweep.slurm import cpu_seconds
from ra3lab.sweep.status import read_stages

SWEEP = "bench_pipeline"
TARGET_COMPUTE_RATIO = 0.5


def _accounted(jobs: list[str], tries: int = 6, pause_s: float = 5.0) -> float | None:
    """The jobs' CPU seconds from accounting, asked again while sacct does not answer (slurmdbd records a job
    moments after it ends, later on a loaded machine); None if it never does."""
    for _ in range(tries):
        seconds = cpu_seconds(jobs)
        if seconds:
            return seconds
        time.sleep(pause_s)
    return None


def _points(extra: list[str]) -> list[list[str]]:
    """Each point's whole override list (fixed + grid + ``extra``), as the sweep expands it."""
    return [list(point.overrides) for point in plan(SWEEP, extra).points]


def _curves(store: Path) -> dict[tuple[str, int], list[float]]:
    """{(arm, RLVR seed): held-out pass@1 curve} of every rlvr run under a run store (any depth)."""
    found = {}
    for path in store.rglob("rlvr/*/summary.json"):
        summary = json.loads(path.read_text())
        found[(summary["init"], summary["rlvr_seed"])] = summary["curve"]
    return found


def _upstream_runs(store: Path) -> dict[str, int]:
    """How many base models and mid-training runs were computed under a run store (any depth)."""
    return {stage: len(list(store.rglob(f"{stage}/*/summary.json"))) for stage in ("pretrain", "midtrain")}


def _peer(profile: dict, store: Path, extra: list[str], timeout_s: float) -> tuple[float, list[str]]:
    """(seconds, SLURM job ids) of `python -m ra3lab.bench.hydra_app --multirun` over the points, each job in its
    own run store (RA3LAB_RUNS_PER_JOB)."""
    axes: dict[str, list[str]] = {}
    for overrides in _points(extra):
        for override in overrides:
            key, value = override.split("=", 1)
            axes.setdefault(key, []).append(value)
    arguments = [f"{key}={','.join(dict.fromkeys(values))}" for key, values in axes.items()]
    command = [
        sys.executable, "-m", "ra3lab.bench.hydra_app", "-cp", str(project_root()), "-cn", "experiments/rlvr",
        "--multirun", *arguments, "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={profile['partition']}",
        f"hydra.launcher.cpus_per_task={profile['cpus_per_task']}", f"hydra.launcher.mem_gb={profile['mem_gb']}",
        f"hydra.launcher.timeout_min={profile['timeout_min']}",
        f"hydra.launcher.array_parallelism={profile['array_parallelism']}", f"hydra.sweep.dir={store / 'multirun'}",
    ]
    begin = time.perf_counter()
    subprocess.run(command, env={**os.environ, "RA3LAB_RUNS": str(store), "RA3LAB_RUNS_PER_JOB": "1"}, check=True,
                   timeout=timeout_s, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    jobs = sorted({path.name for path in (store / "multirun" / ".submitit").iterdir()
                   if re.fullmatch(r"\d+_\d+", path.name)})                  # submitit's folder per array task
    return time.perf_counter() - begin, jobs


def _ours(profile_name: str, extra: list[str], timeout_s: float) -> tuple[float, list[str], dict]:
    """(seconds, SLURM job ids, the sweep's summary) of ra3lab's stage-by-stage launch into the current runs root."""
    begin = time.perf_counter()
    summary = run_sweep(SWEEP, extra, launcher="slurm", profile=profile_name, timeout_s=timeout_s)
    seconds = time.perf_counter() - begin
    jobs = sorted({entry["job_id"] for entry in read_stages(Path(summary["sweep_dir"])) if entry.get("job_id")})
    return seconds, jobs, summary


def run(profile: str = "localhost", pretrain_steps: int = 30, timeout_s: float = 1800.0) -> dict:
    """Launch the pipeline sweep both ways on the same cluster; a flat JSON-able dict (see the module docstring).

    pretrain_steps: the base model's pre-training steps (the sweep file's 30 by default): how much of a point's
    cost lies upstream, where stages save.
    """
    check(timeout_s > 0, "timeout_s", timeout_s, "must be > 0 seconds")
    check(isinstance(pretrain_steps, int) and pretrain_steps >= 1, "pretrain_steps", pretrain_steps,
          "must be an integer >= 1")
    extra = [f"pretrain.steps={pretrain_steps}"]
    loaded = load_profile(profile)
    check_cluster(loaded)
    with tempfile.TemporaryDirectory(prefix="ra3lab-bench-pipeline-") as folder:
        ours_store, peer_store = Path(folder) / "ours", Path(folder) / "peer"
        with runs_at(ours_store):
            ours_s, ours_jobs, summary = _ours(profile, extra, timeout_s)
        peer_s, peer_jobs = _peer(loaded, peer_store, extra, timeout_s)
        ours_curves, peer_curves = _curves(ours_store), _curves(peer_store)
        ours_upstream, peer_upstream = _upstream_runs(ours_store), _upstream_runs(peer_store)
    ours_cpu, peer_cpu = _accounted(ours_jobs), _accounted(peer_jobs)
    ratio = ours_cpu / peer_cpu if ours_cpu is not None and peer_cpu else None
    n_arms = len({arm for arm, _ in ours_curves})
    differing = [f"{arm} seed {seed}: ours {ours_curves.get((arm, seed))}, peer {peer_curves.get((arm, seed))}"
                 for arm, seed in sorted(ours_curves.keys() | peer_curves.keys())
                 if ours_curves.get((arm, seed)) != peer_curves.get((arm, seed))]
    return {
        "points": len(summary["runs"]), "stage_runs": summary["n_stage_runs"], "profile": profile,
        "pretrain_steps": pretrain_steps, "jobs": {"ours": len(ours_jobs), "peer": len(peer_jobs)},
        "ours_wall_s": ours_s, "peer_wall_s": peer_s, "wall_ratio": ours_s / peer_s,
        "ours_cpu_s": ours_cpu, "peer_cpu_s": peer_cpu, "compute_ratio": ratio,
        "ours_upstream_runs": ours_upstream, "peer_upstream_runs": peer_upstream,
        "upstream_once": ours_upstream == {"pretrain": 1, "midtrain": n_arms},
        "same_results": bool(ours_curves) and not differing, "differing_curves": differing,
        "ours_jobs": ours_jobs, "peer_jobs": peer_jobs, "target_compute_ratio": TARGET_COMPUTE_RATIO,
        "meets_target": bool(ratio is not None and ratio <= TARGET_COMPUTE_RATIO
                             and ours_upstream == {"pretrain": 1, "midtrain": n_arms} and bool(ours_curves)
                             and not differing),
        "peer": f"hydra-core {version('hydra-core')} --multirun + hydra-submitit-launcher "
                f"{version('hydra-submitit-launcher')}, one job per point computing its whole chain",
    }
