"""`ra3lab bench mdp`: batched SMDP value iteration against mdptoolbox-hiive's ValueIteration.

Both solvers run in this process on the same ``n_mdps`` random dense SMDPs (options of 1..4 steps
over 4 primitive actions) with the same span stopping rule, so they take the same sweeps and stop
at the same iterate. The peer gets ``P = transitions / gamma`` (sub-stochastic) and ``R = rewards``,
which makes its ``V = max_a R_a + gamma P_a V`` the SMDP Bellman operator exactly.

Units: times in seconds (wall clock, ``time.perf_counter``); bandwidths in GB/s (1e9 bytes per
second); values and their differences in reward units; ``speedup`` = peer seconds / our seconds.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import version

import numpy as np
import torch

from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import check
from ra3lab.mdp.planning import value_iteration

N_ACTIONS, TAU_MIN, TAU_MAX = 4, 1, 4
MAX_ITER = 100_000          # both solvers: far above the sweeps needed, so only the tolerance stops them
TARGET_SPEEDUP = 20
VALUE_TOLERANCE = 1e-6      # the largest |V_ours - V_peer| the benchmark accepts


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


def _copy_bandwidth(n_bytes: int, repeats: int) -> float:
    """GB/s of np.copyto on float64 arrays of ``n_bytes``, read + write counted, best of ``repeats``."""
    source = np.random.default_rng(0).random(n_bytes // 8)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - begin)
    return 2 * n_bytes / best / 1e9


def run(n_mdps: int = 1000, n_states: int = 64, n_options: int = 16, gamma: float = 0.99, tol: float = 1e-6,
        repeats: int = 3, seed: int = 0, progress: bool = True) -> dict:
    """Time both solvers on the same SMDPs and compare their values; returns a flat JSON-able dict.

    tol: the epsilon of the span rule ``span(V_k - V_{k-1}) < tol (1 - gamma) / gamma`` used by both;
    1e-6 makes the greedy policy 1e-6-optimal and the threshold (about 1e-8) stays far above round-off.
    """
    _validate(n_mdps, n_states, n_options, gamma, tol, repeats)
    family = random_dense(n_tasks=n_mdps, n_states=n_states, n_actions=N_ACTIONS, n_options=n_options,
                          tau_min=TAU_MIN, tau_max=TAU_MAX, gamma=gamma, seed=seed)
    smdp = family.abstract   # option models: shared input, not timed

    ours_repeats = []
    for _ in range(repeats):
        begin = time.perf_counter()
        result = value_iteration(smdp, tol=tol, stop="span", max_iter=MAX_ITER)
        ours_repeats.append(time.perf_counter() - begin)
    ours = min(ours_repeats)

    peer_transitions = np.ascontiguousarray((smdp.transitions / gamma).numpy())  # (B, A, S, S), C order as hiive expects
    peer_rewards = np.ascontiguousarray(smdp.rewards.transpose(1, 2).numpy())  # (B, S, A): hiive reads R[:, a]
    peer_values, peer_iterations, peer, peer_run_only = _peer(peer_transitions, peer_rewards, gamma, tol, progress)

    iterations = result.iterations.numpy()
    max_diff = float(np.abs(result.values.numpy() - peer_values).max())
    model_bytes = smdp.transitions[0].numel() * smdp.transitions.element_size()   # one MDP's (Z, S, S)
    bellman = float(iterations.sum()) * model_bytes / ours / 1e9   # sweeps 2..k and the final Q backup read models
    copy = _copy_bandwidth(model_bytes * n_mdps, max(repeats, 5))
    speedup = peer / ours
    return {
        "n_mdps": n_mdps, "n_states": n_states, "n_options": n_options, "n_actions": N_ACTIONS,
        "tau_min": TAU_MIN, "tau_max": TAU_MAX,
        "gamma": gamma, "tol": tol,
        "ours_s": ours, "ours_repeats_s": ours_repeats,
        "peer_s": peer, "peer_run_only_s": peer_run_only,
        "speedup": speedup, "speedup_run_only": peer_run_only / ours,
        "max_abs_value_diff": max_diff,
        "values_agree": max_diff <= VALUE_TOLERANCE,
        "iterations_agree": bool((iterations == peer_iterations).all()),
        "mean_iterations": float(iterations.mean()), "max_iterations": int(iterations.max()),
        "bellman_bandwidth_gbs": bellman, "numpy_copy_bandwidth_gbs": copy, "bandwidth_ratio": bellman / copy,
        "peer": f"mdptoolbox-hiive {version('mdptoolbox-hiive')}",
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(speedup >= TARGET_SPEEDUP and max_diff <= VALUE_TOLERANCE),
        "notes": ("speedup = peer construct+run loop / our best batched value_iteration call (what a peer user pays); "
                  "speedup_run_only counts the peer's run() alone. Building option models and converting them to "
                  "the peer's format is not timed. Bellman bandwidth counts the model bytes each MDP must read: "
                  "iterations x Z*S*S*8 per MDP (the first sweep from V = 0 reads no models, the final Q backup "
                  "does); numpy copy counts read + write "
                  "of an array as large as the whole (B, Z, S, S) model tensor, so a ratio > 1 means cache reuse."),
    }
