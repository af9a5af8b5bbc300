"""Value-iteration sweeps compiled by numba: each MDP runs all its sweeps on one thread before the next MDP.

An MDP's option models (Z S S float64: 512 KiB at Z = 16, S = 64) are then read from memory once, by its first
product sweep, and from that core's cache by every later one, while the threads share out the MDPs. Each
backup sums ``R_z(s) + sum_s' V(s') P_z(s, s')`` in one fixed order with no fused multiply-add, so the values
are the same bits on every machine and for every batch, thread count and order of the MDPs.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

NUMBA_THREADS = numba.get_num_threads()   # the most numba's pool can run: its size, before anything lowers it
_inline = numba.njit(cache=True, boundscheck=False, error_model="numpy", inline="always")


@_inline
def _backup(models, rewards, values, q):
    """q (Z S,) = rewards (Z S,) + values (S',) times models (S', Z S), successor-major: four successors'
    terms at a time, ``q += (v0 m0 + v1 m1) + (v2 m2 + v3 m3)``, so q is loaded and stored once per four rows."""
    q[:] = rewards
    n_successors, width = models.shape
    last = n_successors - n_successors % 4
    for successor in range(0, last, 4):
        v0, v1, v2, v3 = values[successor], values[successor + 1], values[successor + 2], values[successor + 3]
        m0, m1, m2, m3 = models[successor], models[successor + 1], models[successor + 2], models[successor + 3]
        for j in range(width):
            q[j] += (v0 * m0[j] + v1 * m1[j]) + (v2 * m2[j] + v3 * m3[j])
    for successor in range(last, n_successors):
        value, row = values[successor], models[successor]
        for j in range(width):
            q[j] += value * row[j]


@_inline
def _greedy(q, out, terminal_zero):
    """out (S,) = max over options of q (Z S,); -inf (no allowed option) becomes 0 where terminal_zero."""
    n_states = out.shape[0]
    for state in range(n_states):
        best = q[state]
        for j in range(state + n_states, q.shape[0], n_states):
            best = max(best, q[j])
        out[state] = 0.0 if terminal_zero and best == -np.inf else best


@_inline
def _change(new, old, span):
    """The stopping rule's size of new - old (S,): its span, or its sup norm."""
    low, high = np.inf, -np.inf
    for state in range(new.shape[0]):
        step = new[state] - old[state]
        if not span:
            step = abs(step)
        low, high = min(low, step), max(high, step)
    return high - low if span else high


@numba.njit(cache=True, boundscheck=False, error_model="numpy", parallel=True)
def _solve(models, rewards, values, iterations, active, q, threshold, span, done, max_iter, masked):
    for b in numba.prange(models.shape[0]):
        current, new = values[b].copy(), np.empty_like(values[b])
        sweep = done
        while active[b] and sweep < max_iter:
            sweep += 1
            _backup(models[b], rewards[b], current, q[b])
            _greedy(q[b], new, masked)
            if _change(new, current, span) < threshold[b]:
                active[b] = False
            current, new = new, current
        if sweep > done:
            values[b] = current
            iterations[b] = sweep
        _backup(models[b], rewards[b], values[b], q[b])


def solve(models: torch.Tensor, rewards: torch.Tensor, values: torch.Tensor, iterations: torch.Tensor,
          active: torch.Tensor, threshold: torch.Tensor, span: bool, done: int, max_iter: int,
          masked: bool) -> torch.Tensor:
    """Sweeps ``done + 1, done + 2, ...`` of each active MDP until its stopping rule fires or max_iter, then
    its final backup; returns that backup q (B, Z S).

    models: (B, S', Z S) successor-major; rewards: (B, Z S), -inf where not allowed; threshold: (B,) the
    change size below which an MDP stops (span or sup norm). In place: values (B, S) get each MDP's last
    iterate, iterations (B,) its count, active (B,) False once it stopped. Runs on as many threads as torch
    uses (``torch.set_num_threads``), at most numba's.
    """
    q = torch.empty_like(rewards)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), NUMBA_THREADS)))
    _solve(models.numpy(), rewards.numpy(), values.numpy(), iterations.numpy(), active.numpy(), q.numpy(),
           threshold.numpy(), span, done, max_iter, masked)
    return q
