"""`ra3lab bench mdp`: batched SMDP value iteration against mdptoolbox-hiive's ValueIteration.

Both solvers run in this process on the same ``n_mdps`` random dense SMDPs (options of 1..4 steps
over 4 primitive actions) with the same span stopping rule, so they take the same sweeps and stop
at the same iterate. The peer gets ``P = transitions / gamma`` (sub-stochastic) and ``R = rewards``,
which makes its ``V = max_a R_a + gamma P_a V`` the SMDP Bellman operator exactly.

Both are timed in turn, ``repeats`` times each, and every time reported is a median (the machine is
shared and noisy); the ratios are computed from the reported medians. Units: times in seconds (wall
clock, ``time.perf_counter``); bandwidths in GB/s (1e9 bytes per second); sizes in bytes; values in
reward units; ``speedup`` = peer seconds / our seconds.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import version
from pathlib import Path
from statistics import median

import numpy as np
import torch

from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import check
from ra3lab.mdp import planning, sweeps

N_ACTIONS, TAU_MIN, TAU_MAX = 4, 1, 4
MAX_ITER = 100_000          # both solvers: far above the sweeps needed, so only the tolerance stops them
TARGET_SPEEDUP, TARGET_SPEEDUP_RUN_ONLY = 20, 8
VALUE_TOLERANCE = 1e-6      # the largest |V_ours - V_peer| the benchmark accepts
CACHE_COPY_BYTES = 2**18    # in-cache copy where the OS does not give the L2 size: 256 KiB, in any L2
IN_CACHE_REPEATS = 200      # in-cache copies and sweeps per timing: one alone is too short to time
CACHES = Path("/sys/devices/system/cpu/cpu0/cache")   # Linux: index*/{level,type,size} of each cache of cpu0

NOTES = ("speedup = median peer construct+run loop / median batched value_iteration call (what a peer user "
         "pays); speedup_run_only counts the peer's run() alone. ours_compile_s: the untimed first call, in "
         "which numba compiles the sweeps (once per machine, then loaded from its cache). Building option "
         "models and converting them to the peer's format is not timed. Bellman bandwidth counts the model "
         "bytes each MDP must read: iterations x Z*S*S*8 per MDP (the first sweep from V = 0 reads no "
         "models, the final Q backup does). The solver runs all sweeps of one MDP (mdp_bytes of models) on "
         "one thread before its next, so only an MDP's first product sweep reads from memory. Copies count "
         "read + write on one thread: memory_copy of an array as large as the whole model tensor, cache_copy "
         "of one a quarter of L2; cache_sweep is the solver's sweep repeated on one MDP per thread that "
         "stays in cache, on `threads` threads: the most a sweep can reach. load_average: the 1-minute load "
         "when the run began (other work on the machine slows both).")


def cache_sizes(root: Path = CACHES) -> dict[int, int]:
    """{level: bytes} of the data and unified CPU caches one core sees (1 = L1d), as Linux's sysfs lists
    them under root; {} where it does not (another OS)."""
    sizes = {}
    for index in root.glob("index*"):
        try:
            if (index / "type").read_text().strip() != "Instruction":
                sizes[int((index / "level").read_text())] = _size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
    return sizes


def _size_bytes(text: str) -> int:
    """Bytes of a cache size as sysfs writes it: ``"32K"``, ``"1024K"``, ``"2M"``."""
    text = text.strip()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * scale


def _validate(n_mdps, n_states, n_options, gamma, tol, repeats) -> None:
    for field, value, least in (("n_mdps", n_mdps, 1), ("n_states", n_states, 2), ("n_options", n_options, 1),
                                ("repeats", repeats, 1)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= least, field, value,
              f"must be an integer >= {least}")
    check(isinstance(gamma, float) and 0.0 < gamma < 1.0, "gamma", gamma, "must be a float in the open interval (0, 1)")
    check(isinstance(tol, float) and 0.0 < tol < 1.0, "tol", tol, "must be a float in the open interval (0, 1)")


def _peer(transitions: np.ndarray, rewards: np.ndarray, gamma: float, tol: float, progress: bool):
    """Loop hiive's ValueIteration over the MDPs: (values (B, S), iterations (B,), total s, run()-only s)."""
    from hiive.mdptoolbox.mdp import ValueIteration
    from rich.console import Console
    from rich.progress import track

    B, _, S, _ = transitions.shape
    values, iterations, run_only = np.empty((B, S)), np.empty(B, dtype=np.int64), 0.0
    bar = track(range(B), description="mdptoolbox-hiive", console=Console(stderr=True), disable=not progress,
                transient=True)
    total = 0.0                     # construct + run per MDP; the progress bar is not counted
    for b in bar:
        begin = time.perf_counter()
        vi = ValueIteration(transitions[b], rewards[b], gamma, epsilon=tol, skip_check=True)
        vi.max_iter = MAX_ITER   # lift the Puterman bound set by _boundIter: stop by the span rule only
        ran = time.perf_counter()
        vi.run()
        end = time.perf_counter()
        run_only += end - ran
        total += end - begin
        values[b], iterations[b] = vi.V, vi.iter
    return values, iterations, total, run_only


def _alternate(smdp, gamma: float, tol: float, repeats: int, progress: bool):
    """Our solver and the peer's loop timed in turn, ``repeats`` times each, so that both meet the same load
    on a shared machine, after one untimed call of ours on one MDP that compiles the sweeps: (our last
    VIResult, our seconds per call, the peer's runs as _peer returns them, that first call's seconds)."""
    peer_transitions = np.ascontiguousarray((smdp.transitions / gamma).numpy())  # (B, A, S, S), C order for hiive
    peer_rewards = np.ascontiguousarray(smdp.rewards.transpose(1, 2).numpy())  # (B, S, A): hiive reads R[:, a]
    begin = time.perf_counter()
    planning.value_iteration(smdp.select(torch.arange(1)), tol=tol, stop="span", max_iter=MAX_ITER)
    warmup = time.perf_counter() - begin                    # numba compiles the sweeps, or loads them from its cache
    ours, peer_runs = [], []
    for _ in range(repeats):
        begin = time.perf_counter()
        result = planning.value_iteration(smdp, tol=tol, stop="span", max_iter=MAX_ITER)
        ours.append(time.perf_counter() - begin)
        peer_runs.append(_peer(peer_transitions, peer_rewards, gamma, tol, progress))
    return result, ours, peer_runs, warmup


def _seconds(work, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of work()."""
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
    return times


def _copy_bandwidth(n_bytes: int, repeats: int, inner: int = 1) -> float:
    """Median GB/s of ``inner`` back-to-back np.copyto of float64 arrays of ``n_bytes``, read + write counted."""
    source = np.random.default_rng(0).random(n_bytes // 8)
    target = np.empty_like(source)

    def copies():
        for _ in range(inner):
            np.copyto(target, source)

    return 2 * source.nbytes * inner / median(_seconds(copies, repeats)) / 1e9


def _cache_sweep_bandwidth(smdp, repeats: int) -> float:
    """Median GB/s of the solver's sweeps on one MDP per thread whose models stay in cache (IN_CACHE_REPEATS
    sweeps that never stop, then the final backup): what a sweep reads at best once its MDP is loaded."""
    n = min(len(smdp), torch.get_num_threads())
    models = smdp.successor_major()[:n]
    rewards = smdp.rewards[:n].reshape(n, -1)
    never = torch.full((n,), float("-inf"), dtype=rewards.dtype)

    def sweep():
        values, iterations = torch.zeros(n, models.shape[1], dtype=rewards.dtype), torch.zeros(n, dtype=torch.long)
        sweeps.solve(models, rewards, values, iterations, torch.ones(n, dtype=torch.bool), never, True, 0,
                     IN_CACHE_REPEATS, False)

    sweep()                                               # loads the models into cache
    model_reads = models.numel() * models.element_size() * (IN_CACHE_REPEATS + 1)
    return model_reads / median(_seconds(sweep, repeats)) / 1e9


def _bandwidths(smdp, iterations: np.ndarray, seconds: float, repeats: int) -> dict:
    """The solver's effective Bellman bandwidth next to a memory copy, an in-cache copy and its own sweep on
    MDPs in cache (GB/s), with the caches the in-cache copy was sized from."""
    n_mdps, caches = len(smdp), cache_sizes()
    mdp_bytes = smdp.transitions[0].numel() * smdp.transitions.element_size()   # one MDP's (Z, S, S)
    bellman = float(iterations.sum()) * mdp_bytes / seconds / 1e9   # sweeps 2..k and the final Q backup read models
    memory_copy = _copy_bandwidth(mdp_bytes * n_mdps, max(repeats, 5))
    cache_copy = _copy_bandwidth(caches.get(2, 4 * CACHE_COPY_BYTES) // 4, max(repeats, 5), IN_CACHE_REPEATS)
    return {
        "model_bytes": mdp_bytes * n_mdps, "mdp_bytes": mdp_bytes,
        "cache_levels": sorted(caches), "cache_bytes": [caches[level] for level in sorted(caches)],
        "bellman_bandwidth_gbs": bellman,
        "memory_copy_bandwidth_gbs": memory_copy, "cache_copy_bandwidth_gbs": cache_copy,
        "cache_sweep_bandwidth_gbs": _cache_sweep_bandwidth(smdp, max(repeats, 5)),
        "bandwidth_vs_memory_copy": bellman / memory_copy, "bandwidth_vs_cache_copy": bellman / cache_copy,
    }


def meets_target(report: dict) -> bool:
    """Whether a report reaches both speed targets with the peer's iterations and values."""
    return bool(report["speedup"] >= TARGET_SPEEDUP and report["speedup_run_only"] >= TARGET_SPEEDUP_RUN_ONLY
                and report["values_agree"] and report["iterations_agree"])


def run(n_mdps: int = 1000, n_states: int = 64, n_options: int = 16, gamma: float = 0.99, tol: float = 1e-6,
        repeats: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Time both solvers ``repeats`` times on the same SMDPs and compare their values; a flat JSON-able dict.

    tol: the epsilon of the span rule ``span(V_k - V_{k-1}) < tol (1 - gamma) / gamma`` used by both;
    1e-6 makes the greedy policy 1e-6-optimal and the threshold (about 1e-8) stays far above round-off.
    """
    _validate(n_mdps, n_states, n_options, gamma, tol, repeats)
    load = os.getloadavg()[0]
    family = random_dense(n_tasks=n_mdps, n_states=n_states, n_actions=N_ACTIONS, n_options=n_options,
                          tau_min=TAU_MIN, tau_max=TAU_MAX, gamma=gamma, seed=seed)
    smdp = family.abstract   # option models: shared input, not timed

    result, ours_repeats, peer_runs, warmup = _alternate(smdp, gamma, tol, repeats, progress)
    ours, iterations = median(ours_repeats), result.iterations.numpy()
    peer_values, peer_iterations = peer_runs[-1][:2]
    peer_repeats, peer_run_only_repeats = [one[2] for one in peer_runs], [one[3] for one in peer_runs]
    peer, peer_run_only = median(peer_repeats), median(peer_run_only_repeats)
    max_diff = float(np.abs(result.values.numpy() - peer_values).max())
    report = {
        "n_mdps": n_mdps, "n_states": n_states, "n_options": n_options, "n_actions": N_ACTIONS,
        "tau_min": TAU_MIN, "tau_max": TAU_MAX, "gamma": gamma, "tol": tol, "repeats": repeats,
        "ours_s": ours, "ours_repeats_s": ours_repeats, "ours_compile_s": warmup,
        "peer_s": peer, "peer_repeats_s": peer_repeats,
        "peer_run_only_s": peer_run_only, "peer_run_only_repeats_s": peer_run_only_repeats,
        "speedup": peer / ours, "speedup_run_only": peer_run_only / ours,
        "max_abs_value_diff": max_diff,
        "values_agree": max_diff <= VALUE_TOLERANCE, "iterations_agree": bool((iterations == peer_iterations).all()),
        "mean_iterations": float(iterations.mean()), "max_iterations": int(iterations.max()),
        **_bandwidths(smdp, iterations, ours, repeats),
        "peer": f"mdptoolbox-hiive {version('mdptoolbox-hiive')}",
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": load,
        "target_speedup": TARGET_SPEEDUP, "target_speedup_run_only": TARGET_SPEEDUP_RUN_ONLY,
        "notes": NOTES,
    }
    return {**report, "meets_target": meets_target(report)}
