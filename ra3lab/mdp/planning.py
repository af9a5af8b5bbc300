"""Exact planning on batched SMDPs: value iteration over options, Q*, greedy policies, policy evaluation.

A mask ``allowed`` of shape (Z,) or (B, Z) restricts each MDP to a subset Z' of the decisions
(the MDP M|Z' of Lemma 3.2). A state with no allowed decision is terminal with value 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ra3lab.errors import check, check_choice
from ra3lab.mdp import sweeps
from ra3lab.mdp.smdp import SMDP, _expand

STOPPING_RULES = ("sup", "span")


@dataclass(frozen=True)
class VIResult:
    """values: (B, S); q: (B, Z, S), -inf where not allowed; policy: (B, S) greedy option index;
    iterations: (B,) sweeps each MDP needed; converged: (B,) whether the stopping rule fired."""

    values: torch.Tensor
    q: torch.Tensor
    policy: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor


def bellman_q(smdp: SMDP, values: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(B, Z, S) one Bellman backup ``R_z + P_z V`` of values (B, S); -inf for disallowed options."""
    B, Z, S, _ = smdp.transitions.shape
    q = torch.baddbmm(smdp.rewards.view(B, 1, Z * S), values.unsqueeze(1), smdp.successor_major()).view(B, Z, S)
    if allowed is not None:
        q = q.masked_fill(~_expand(allowed, q), float("-inf"))
    return q


def greedy_values(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and argmax over options of q (B, Z, S); a state with no allowed option gets value 0."""
    values, policy = q.max(1)
    return values.nan_to_num(neginf=0.0), policy


def value_iteration(
    smdp: SMDP,
    tol: float = 1e-8,
    allowed: torch.Tensor | None = None,
    stop: str = "sup",
    max_iter: int = 100_000,
    initial: torch.Tensor | None = None,
) -> VIResult:
    """Value iteration over options for all ``B`` SMDPs at once; each stops on its own.

    stop="sup": stop when ``||V_k - V_{k-1}||_inf < tol (1 - gamma_bar) / (2 gamma_bar)``, which makes
    V_k tol/2-close to V* and its greedy policy tol-optimal (gamma_bar from Theorem 3.6).
    stop="span": mdptoolbox's rule, ``span(V_k - V_{k-1}) < tol (1 - gamma) / gamma``.
    Each MDP gets exactly the iterates it would get alone, whatever the batch, its order and the threads.

    Speed: ``sweeps.solve`` runs all sweeps of one MDP on one thread before its next MDP, so only the first
    product sweep reads the option models from memory and the others read them from that core's cache.
    """
    check(tol > 0, "tol", tol, "must be > 0")
    check(max_iter >= 1, "max_iter", max_iter, "must be >= 1")
    check_choice("stop", stop, STOPPING_RULES)
    B, Z, S = len(smdp), smdp.n_options, smdp.n_states
    dtype = smdp.rewards.dtype
    values = torch.zeros(B, S, dtype=dtype) if initial is None else initial.to(dtype).contiguous().clone()
    iterations = torch.zeros(B, dtype=torch.long)
    active = torch.ones(B, dtype=torch.bool)
    rewards = smdp.rewards                                  # -inf on disallowed options: R + P V is then -inf
    if allowed is not None:
        rewards = rewards.masked_fill(~_expand(allowed, rewards), float("-inf"))
    if stop == "sup":
        gamma_bar = smdp.gamma_bar(allowed).clamp(min=1e-300)
        threshold = tol * (1 - gamma_bar) / (2 * gamma_bar)
    else:
        threshold = torch.full((B,), tol * (1 - smdp.gamma) / smdp.gamma, dtype=dtype)
    if initial is None:                                     # from V = 0 the first sweep is max_z R_z: no product
        values = rewards.amax(1).nan_to_num_(neginf=0.0)
        iterations += 1
        active &= _change_size(values, stop) >= threshold
    q = sweeps.solve(smdp.successor_major(), rewards.reshape(B, Z * S), values, iterations, active,
                     threshold.to(dtype).contiguous(), stop == "span", int(initial is None), max_iter,
                     allowed is not None)
    q = q.view(B, Z, S)
    return VIResult(values, q, greedy_values(q)[1], iterations, ~active)


def _change_size(change: torch.Tensor, stop: str) -> torch.Tensor:
    """(n,) size of each row of change (n, S) under the stopping rule: its sup norm or its span."""
    if stop == "sup":
        return change.abs().amax(1)
    low, high = torch.aminmax(change, dim=1)
    return high - low


def policy_evaluation(smdp: SMDP, policy: torch.Tensor, terminal: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S) exact values of a deterministic policy (B, S) over options: solves (I - P_pi) V = R_pi.

    terminal: optional (B, S) bool, states where the policy cannot act; their value is 0.
    """
    B, S = len(smdp), smdp.n_states
    index = policy.view(B, 1, S, 1).expand(B, 1, S, S)
    p_pi = smdp.transitions.gather(1, index).squeeze(1)                  # (B, S, S)
    r_pi = smdp.rewards.gather(1, policy.unsqueeze(1)).squeeze(1)         # (B, S)
    if terminal is not None:
        p_pi = p_pi.masked_fill(terminal.unsqueeze(-1), 0.0)
        r_pi = r_pi.masked_fill(terminal, 0.0)
    eye = torch.eye(S, dtype=p_pi.dtype).expand(B, S, S)
    return torch.linalg.solve(eye - p_pi, r_pi.unsqueeze(-1)).squeeze(-1)


def stochastic_policy_evaluation(smdp: SMDP, probs: torch.Tensor) -> torch.Tensor:
    """(B, S) exact values of a stochastic policy probs (B, Z, S) over options (sums to 1 over Z)."""
    S = smdp.n_states
    p_pi = (probs.unsqueeze(-1) * smdp.transitions).sum(1)
    r_pi = (probs * smdp.rewards).sum(1)
    eye = torch.eye(S, dtype=p_pi.dtype).expand_as(p_pi)
    return torch.linalg.solve(eye - p_pi, r_pi.unsqueeze(-1)).squeeze(-1)


def optimal_values(smdp: SMDP, allowed: torch.Tensor | None = None, tol: float = 1e-10) -> torch.Tensor:
    """(B, S) V* of each SMDP restricted to ``allowed``: value iteration, then exact evaluation of its
    greedy policy, so the result is V* to round-off rather than to the stopping tolerance."""
    result = value_iteration(smdp, tol=tol, allowed=allowed)
    terminal = None if allowed is None else ~_expand(allowed, smdp.rewards).any(1)
    return policy_evaluation(smdp, result.policy, terminal)


def start_values(smdp: SMDP, values: torch.Tensor) -> torch.Tensor:
    """(B,) values (B, S) read at each MDP's start state s0."""
    return values.gather(1, smdp.start.unsqueeze(1)).squeeze(1)
