"""`ra3lab bench sweep`: launching and collecting a sweep on SLURM, against Hydra's multirun with
hydra-submitit-launcher, in one benchmark run on the same cluster.

Both sides run the same ``n_runs`` short runs (sweeps/bench_t1_seeds.yaml: T1 on one instance,
seeds 0..n-1) as one SLURM array job with the same profile (partition, CPUs, memory, time,
parallelism), each into its own fresh run store. Per-run overhead is the wall time not explained by
the runs' own compute: ``(wall - sum(run wall) / parallelism) / n_runs``. The skip time is a
relaunch of our completed sweep, which must only find that every run is done. The first relaunch
(``skip_s``) pays one-time costs in this process; warm relaunches of all runs and of the first run
alone (best of ``SKIP_REPEATS``) separate the fixed cost from the cost per run, so that the time for
100 runs is ``skip_1 + 99 * (skip_n - skip_1) / (n - 1)`` (not the n-run time scaled, fixed cost and all).

Units: seconds; ``overhead_ratio`` = ours / peer (target <= 1); skip time per 100 runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from ra3lab.config import project_root
from ra3lab.errors import check
from ra3lab.execute import runs_at
from ra3lab.sweep.grid import run_sweep
from ra3lab.sweep.launch import check_cluster
from ra3lab.sweep.profiles import load_profile

SWEEP = "bench_t1_seeds"
FIXED = ["n_instances=1", "mc_instances=0"]
SKIP_REPEATS = 3


def _run_walls(store: Path) -> list[float]:
    """Wall seconds of every finished run under a run store."""
    return [json.loads(path.read_text())["wall_time_s"] for path in store.glob("*/*/summary.json")]


def _peer(n_runs: int, profile: dict, store: Path, timeout_s: float) -> float:
    """Seconds for `python -m ra3lab.bench.hydra_app --multirun` on the submitit SLURM launcher."""
    command = [
        sys.executable, "-m", "ra3lab.bench.hydra_app", "-cp", str(project_root()),
        "-cn", "experiments/t1_regret_decomposition", "--multirun", *FIXED, f"seed=range(0,{n_runs})",
        "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={profile['partition']}",
        f"hydra.launcher.cpus_per_task={profile['cpus_per_task']}", f"hydra.launcher.mem_gb={profile['mem_gb']}",
        f"hydra.launcher.timeout_min={profile['timeout_min']}",
        f"hydra.launcher.array_parallelism={profile['array_parallelism']}", f"hydra.sweep.dir={store / 'multirun'}",
    ]
    begin = time.perf_counter()
    subprocess.run(command, env={**os.environ, "RA3LAB_RUNS": str(store)}, check=True, timeout=timeout_s,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - begin


def _ours(n_runs: int, profile_name: str, timeout_s: float) -> tuple[float, list[float], int]:
    """(launch + collect seconds, relaunch-skip seconds [first, warm, warm of the first run alone],
    runs done) for ra3lab's SLURM launcher, into the current runs root."""

    def sweep(n: int) -> tuple[float, dict]:
        begin = time.perf_counter()
        summary = run_sweep(SWEEP, [f"seed=range(0,{n})"], launcher="slurm", profile=profile_name, timeout_s=timeout_s)
        return time.perf_counter() - begin, summary

    wall, summary = sweep(n_runs)
    first = sweep(n_runs)[0]
    warm = [min(sweep(n)[0] for _ in range(SKIP_REPEATS)) for n in (n_runs, 1)]
    return wall, [first, *warm], summary["counts"]["done"]


def run(n_runs: int = 32, profile: str = "localhost", timeout_s: float = 900.0, progress: bool = True) -> dict:
    """Time both launchers on the same runs; returns a flat JSON-able dict (see the module docstring)."""
    check(isinstance(n_runs, int) and n_runs >= 1, "n_runs", n_runs, "must be an integer >= 1")
    check(timeout_s > 0, "timeout_s", timeout_s, "must be > 0 seconds")
    loaded = load_profile(profile)
    check_cluster(loaded)
    with tempfile.TemporaryDirectory(prefix="ra3lab-bench-sweep-") as folder:
        ours_store, peer_store = Path(folder) / "ours", Path(folder) / "peer"
        with runs_at(ours_store):
            ours, (skip, skip_warm, skip_one), done = _ours(n_runs, profile, timeout_s)
        peer = _peer(n_runs, loaded, peer_store, timeout_s)
        ours_walls, peer_walls = _run_walls(ours_store), _run_walls(peer_store)
    slots = int(loaded["array_parallelism"])
    ours_overhead = (ours - sum(ours_walls) / slots) / n_runs
    peer_overhead = (peer - sum(peer_walls) / slots) / n_runs
    return {
        "n_runs": n_runs, "profile": profile, "array_parallelism": slots,
        "ours_s": ours, "peer_s": peer,
        "ours_runs_done": done, "peer_runs_done": len(peer_walls),
        "ours_mean_run_s": sum(ours_walls) / max(len(ours_walls), 1),
        "peer_mean_run_s": sum(peer_walls) / max(len(peer_walls), 1),
        "ours_overhead_per_run_s": ours_overhead, "peer_overhead_per_run_s": peer_overhead,
        "overhead_ratio": ours_overhead / peer_overhead,
        "meets_target": bool(ours_overhead <= peer_overhead and done == n_runs),
        "skip_s": skip, "skip_warm_s": skip_warm, "skip_one_run_s": skip_one,
        "skip_per_100_runs_s": skip_one + 99 * (skip_warm - skip_one) / max(n_runs - 1, 1),
        "peer": f"hydra-core {version('hydra-core')} --multirun + hydra-submitit-launcher "
                f"{version('hydra-submitit-launcher')}",
    }
