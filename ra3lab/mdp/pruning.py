"""Pruning the decision set (Theorem 3.5): pruning error, Z_eps, expert data, pruning rules, samples to eps.

Shapes: ``B`` tasks, ``Z`` options, ``S`` states. A mask (Z,) or (B, Z) bool is a subset Z' of the
decisions; ``Delta(M, Z') = V*_M(s0) - V*_{M|Z'}(s0) >= 0`` is its pruning error on task M and
``E_M[Delta(M, Z')]`` (the mean over the ``B`` tasks) its expected pruning error.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ra3lab.errors import check, check_choice
from ra3lab.mdp.planning import bellman_q, optimal_values, start_values
from ra3lab.mdp.smdp import SMDP

PRUNING_RULES = ("observed", "frequency", "top_k")
ERROR_TOL = 1e-10        # slack on "error <= eps" comparisons: values are exact only to round-off
CHUNK_ELEMENTS = 2**23   # transition entries per batched value-iteration call (64 MiB of float64)


def check_allowed(allowed: torch.Tensor, n_rows: int, n_options: int, nonempty: bool = True, field: str = "allowed") -> None:
    """Raise ConfigError unless ``allowed`` is a bool mask (Z,) or (n_rows, Z), with a decision in every
    row if ``nonempty``."""
    shape = tuple(allowed.shape)
    check(allowed.dtype == torch.bool, field, str(allowed.dtype), "must be a bool tensor")
    check(shape in ((n_options,), (n_rows, n_options)), field, shape, f"must have shape ({n_options},) or {(n_rows, n_options)}")
    check(not nonempty or bool(allowed.view(-1, n_options).any(1).all()), field, "a row with no decision",
          "every row must allow at least one decision")


def pruning_error(smdp: SMDP, allowed: torch.Tensor) -> torch.Tensor:
    """(B,) Delta(M, Z') = V*_M(s0) - V*_{M|Z'}(s0) for a mask ``allowed`` (Z,) or (B, Z).

    An empty Z' gives V*_{M|Z'} = 0. Values are exact to round-off (see ``optimal_values``), so the
    full set gives exactly 0 and any subset >= 0 up to ~1e-12.
    """
    check_allowed(allowed, len(smdp), smdp.n_options, nonempty=False)
    return start_values(smdp, optimal_values(smdp)) - start_values(smdp, optimal_values(smdp, allowed))


def expected_pruning_errors(smdp: SMDP, masks: torch.Tensor) -> torch.Tensor:
    """(M,) E_M[Delta(M, Z'_m)] for M >= 1 masks (M, Z): every (mask, task) pair is one SMDP of a batched
    value iteration, in chunks of about ``CHUNK_ELEMENTS`` transition entries."""
    B, Z, S = len(smdp), smdp.n_options, smdp.n_states
    v_full = start_values(smdp, optimal_values(smdp))
    per_chunk = max(1, CHUNK_ELEMENTS // (B * Z * S * S))
    means = []
    for chunk in masks.split(per_chunk):
        pairs = smdp.select(torch.arange(B).repeat(len(chunk)))            # mask-major: (m * B) SMDPs
        v = start_values(pairs, optimal_values(pairs, chunk.repeat_interleave(B, 0)))
        means.append((v_full - v.view(len(chunk), B)).mean(1))
    return torch.cat(means)


@dataclass(frozen=True)
class ZEps:
    """Z_eps: mask (Z,) bool; size |Z_eps|; expected_error E_M[Delta(M, Z_eps)];
    exact: True if found by enumeration (truly smallest), False if by greedy forward selection."""

    mask: torch.Tensor
    size: int
    expected_error: float
    exact: bool


def z_eps(smdp: SMDP, eps: float, exact_max_options: int = 12) -> ZEps:
    """The smallest subset Z' with E_M[Delta(M, Z')] <= eps.

    Z <= exact_max_options: enumerate subsets by increasing size (all subsets of one size in one
    batched value iteration); among the smallest feasible ones, return the lowest expected error.
    Otherwise greedy forward selection from the empty set: add the option that lowers the expected
    error most (ties: lowest index) until it is <= eps. Greedy can overshoot |Z_eps| when options
    only help together (e.g. a goal needs two of them), hence ``exact=False``.
    """
    check(eps >= 0, "eps", eps, "must be >= 0")
    check(exact_max_options >= 0, "exact_max_options", exact_max_options, "must be >= 0")
    Z = smdp.n_options
    if Z <= exact_max_options:
        for size in range(Z + 1):
            combos = list(itertools.combinations(range(Z), size))
            masks = torch.zeros(len(combos), Z, dtype=torch.bool)
            for row, combo in enumerate(combos):
                masks[row, list(combo)] = True
            errors = expected_pruning_errors(smdp, masks)
            best = int(errors.argmin())
            if errors[best] <= eps + ERROR_TOL:
                return ZEps(masks[best], size, float(errors[best]), True)
    mask = torch.zeros(Z, dtype=torch.bool)
    error = float(expected_pruning_errors(smdp, mask.unsqueeze(0))[0])
    while error > eps + ERROR_TOL:
        candidates = (~mask).nonzero().squeeze(1)
        masks = mask.expand(len(candidates), Z).clone()
        masks[torch.arange(len(candidates)), candidates] = True
        errors = expected_pruning_errors(smdp, masks)
        best = int(errors.argmin())
        mask, error = masks[best], float(errors[best])
    return ZEps(mask, int(mask.sum()), error, False)


@dataclass(frozen=True)
class ExpertData:
    """n expert samples: task (n,) long, the task of each; counts (n, Z) int64, how often each decision
    was revealed in each sample. The data of the first n' samples is ``counts[:n'].sum(0)``."""

    task: torch.Tensor
    counts: torch.Tensor


def _check_expert(sigma: float, noise: float, horizon: int | None) -> None:
    check(0 < sigma <= 1, "sigma", sigma, "must lie in (0, 1]")
    check(0 <= noise < 1, "noise", noise, "must lie in [0, 1)")
    check(horizon is None or horizon >= 1, "horizon", horizon, "must be >= 1 (or None for 4 * n_states)")


def sample_expert_data(
    smdp: SMDP,
    n_samples: int,
    sigma: float,
    generator: torch.Generator,
    terminal: torch.Tensor | None = None,
    horizon: int | None = None,
    noise: float = 0.0,
) -> ExpertData:
    """Expert trajectories at option level, each decision revealed with probability ``sigma``.

    A sample draws a task uniformly, follows its optimal policy (greedy in V*, ties to the lowest
    index) from s0 with next states drawn from the normalised option model ``P[b, z, s, :] / sum``
    (the gamma^tau-weighted law of where z ends), and stops at a ``terminal`` (B, S) state or after
    ``horizon`` decisions (default 4 S). Each decision is revealed independently with probability
    sigma; with probability ``noise`` a revealed decision is replaced by one uniform over Z.
    """
    check(n_samples >= 1, "n_samples", n_samples, "must be >= 1")
    _check_expert(sigma, noise, horizon)
    B, Z, S = len(smdp), smdp.n_options, smdp.n_states
    if terminal is not None:
        check(tuple(terminal.shape) == (B, S), "terminal", tuple(terminal.shape), f"must have shape {(B, S)}")
    terminal = torch.zeros(B, S, dtype=torch.bool) if terminal is None else terminal
    policy = bellman_q(smdp, optimal_values(smdp)).argmax(1)                    # (B, S)
    kernel = smdp.transitions / smdp.transitions.sum(-1, keepdim=True)
    rows = torch.arange(n_samples)
    task = torch.randint(B, (n_samples,), generator=generator)
    state = smdp.start[task]
    active = ~terminal[task, state]
    counts = torch.zeros(n_samples, Z, dtype=torch.long)
    for _ in range(4 * S if horizon is None else horizon):
        if not active.any():
            break
        decision = policy[task, state]
        revealed = active & (torch.rand(n_samples, generator=generator, dtype=torch.float64) < sigma)
        replaced = torch.rand(n_samples, generator=generator, dtype=torch.float64) < noise
        shown = torch.where(replaced, torch.randint(Z, (n_samples,), generator=generator), decision)
        counts[rows, shown] += revealed.long()
        following = torch.multinomial(kernel[task, decision, state], 1, generator=generator).squeeze(1)
        state = torch.where(active, following, state)
        active &= ~terminal[task, state]
    return ExpertData(task, counts)


def _check_rule(rule: str, threshold: float, k: int | None) -> None:
    check_choice("rule", rule, PRUNING_RULES)
    check(0 <= threshold <= 1, "threshold", threshold, "must lie in [0, 1]")
    check(k is None or k >= 1, "k", k, "must be >= 1")
    check(rule != "top_k" or k is not None, "k", k, "rule 'top_k' needs k >= 1")


def prune(counts: torch.Tensor, rule: str, threshold: float = 0.0, k: int | None = None) -> torch.Tensor:
    """Z_hat as a bool mask shaped like counts: (Z,), or (..., Z) for stacked datasets (e.g. prefixes).

    observed: count >= 1. frequency: count >= 1 and count / total >= threshold (threshold 0 is
    "observed"). top_k: the k most frequent observed decisions, ties to the lower index.
    A decision never seen in the data is never kept.
    """
    _check_rule(rule, threshold, k)
    observed = counts >= 1
    if rule == "observed":
        return observed
    if rule == "frequency":
        total = counts.sum(-1, keepdim=True).clamp(min=1)
        return observed & (counts >= threshold * total)
    Z = counts.shape[-1]
    key = counts * Z + torch.arange(Z - 1, -1, -1)                 # larger count first, then lower index
    top = torch.zeros_like(observed).scatter_(-1, key.topk(min(k, Z), dim=-1).indices, True)
    return top & observed


def full_where_empty(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks, empty): pruned sets (..., Z) with every row that kept no decision (expert data that revealed
    nothing) replaced by the full set Z, and the bool (...) flags of the rows replaced, to count and report."""
    empty = ~masks.any(-1)
    return masks | empty.unsqueeze(-1), empty


def samples_to_eps(
    smdp: SMDP,
    eps: float,
    delta: float,
    sigma: float,
    sample_sizes: list[int],
    trials: int,
    rule: str = "observed",
    generator: torch.Generator | None = None,
    terminal: torch.Tensor | None = None,
    noise: float = 0.0,
    horizon: int | None = None,
    **rule_kwargs,
) -> dict:
    """Success probability of pruning from n expert samples, and the n that reaches 1 - delta.

    Each of ``trials`` datasets is sampled once at max(sample_sizes); Z_hat at size n prunes its
    first n samples (a cumsum prefix). Expected errors are computed once per distinct mask.
    Returns sample_sizes; success[i] = P(E_M[Delta(M, Z_hat)] <= eps) at sample_sizes[i];
    mean_error[i] and mean_size[i] (mean |Z_hat|) over trials; n_required, the smallest size with
    success >= 1 - delta (None if none); n_distinct_masks.
    """
    check(eps >= 0, "eps", eps, "must be >= 0")
    check(0 < delta < 1, "delta", delta, "must lie in (0, 1)")
    check(len(sample_sizes) >= 1 and all(n >= 1 for n in sample_sizes), "sample_sizes", list(sample_sizes),
          "need at least one size, each >= 1")
    check(all(a < b for a, b in itertools.pairwise(sample_sizes)), "sample_sizes", list(sample_sizes),
          "must be strictly increasing")
    check(trials >= 1, "trials", trials, "must be >= 1")
    _check_expert(sigma, noise, horizon)
    check(set(rule_kwargs) <= {"threshold", "k"}, "rule_kwargs", sorted(rule_kwargs), "only threshold and k")
    _check_rule(rule, rule_kwargs.get("threshold", 0.0), rule_kwargs.get("k"))
    generator = generator or torch.Generator().manual_seed(0)
    n_max, Z = max(sample_sizes), smdp.n_options
    data = sample_expert_data(smdp, trials * n_max, sigma, generator, terminal, horizon, noise)
    prefixes = data.counts.view(trials, n_max, Z).cumsum(1)[:, torch.tensor(sample_sizes) - 1]   # (trials, T, Z)
    masks = prune(prefixes, rule, **rule_kwargs)
    distinct, inverse = torch.unique(masks.view(-1, Z), dim=0, return_inverse=True)
    errors = expected_pruning_errors(smdp, distinct)[inverse].view(trials, len(sample_sizes))
    success = (errors <= eps + ERROR_TOL).double().mean(0)
    reached = [n for n, p in zip(sample_sizes, success.tolist()) if p >= 1 - delta]
    return {
        "sample_sizes": list(sample_sizes),
        "success": success.tolist(),
        "mean_error": errors.mean(0).tolist(),
        "mean_size": masks.sum(-1).double().mean(0).tolist(),
        "n_required": reached[0] if reached else None,
        "n_distinct_masks": len(distinct),
    }
