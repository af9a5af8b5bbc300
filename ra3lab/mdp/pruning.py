"""Pruning the decision set (Theorem 3.5): pruning error, Z_eps, noisy expert data, pruning rules, and the
two criteria a pruned set is judged by.

Shapes: ``B`` tasks, ``Z`` options, ``S`` states. A mask (Z,) or (B, Z) bool is a subset Z' of the
decisions; ``Delta(M, Z') = V*_M(s0) - V*_{M|Z'}(s0) >= 0`` is its pruning error on task M and
``E_M[Delta(M, Z')]`` (the mean over the ``B`` tasks) its expected pruning error.

Definitions:

- Z_eps: the smallest Z' with E_M[Delta(M, Z')] <= eps. Its complement, the *distractors*, can all be
  removed together at a cost of at most eps.
- Expert sample: one trajectory of an optimal policy of a task M ~ p(M); each decision it takes is
  revealed with probability sigma, and a noise model may reveal distractors on top (``NOISE_MODELS``).
- Reveal probability p_z: the probability that decision z is revealed at least once in one expert
  sample. sigma_needed = min over z in Z_eps of p_z: how often experts reveal the rarest needed decision.
- (eps, sigma)-suboptimal decision: a distractor z with p_z < ratio * sigma_needed (``SUBOPTIMAL_RATIO``
  = 1/2 by default). Why this definition: removing it (with every other distractor) costs at most eps,
  and the data can tell it from every needed decision, since experts reveal it at most half as often as
  the rarest one; a frequency threshold between the two then separates them from O(log(|Z|/delta) /
  sigma_needed) samples (a Chernoff bound and a union bound over Z). A distractor revealed about as
  often as a needed decision cannot be told from it by any amount of data, so calling it suboptimal
  would make the theorem false by definition rather than by measurement; without a gap (ratio 1) the
  samples needed diverge as p_z approaches sigma_needed.
- A pruned set Z_hat succeeds when E_M[Delta(M, Z_hat)] <= eps (near-optimal) AND it keeps no
  (eps, sigma)-suboptimal decision (compact). Keeping everything is near-optimal with no data, so
  near-optimality alone cannot test the theorem.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ra3lab.errors import check, check_choice
from ra3lab.mdp.planning import bellman_q, optimal_values, start_values
from ra3lab.mdp.smdp import SMDP

PRUNING_RULES = ("observed", "frequency", "top_k")
NOISE_MODELS = ("none", "per_distractor", "budget")
SUBOPTIMAL_RATIO = 0.5   # (eps, sigma)-suboptimal: revealed less than this share of the rarest needed decision
ERROR_TOL = 1e-10        # slack on "error <= eps" comparisons: values are exact only to round-off
CHUNK_ELEMENTS = 2**23   # transition entries per batched value-iteration call (64 MiB of float64)
EXPERT_CHUNK = 2**16     # expert samples simulated at a time


def check_allowed(allowed: torch.Tensor, n_rows: int, n_options: int, nonempty: bool = True,
                  field: str = "allowed") -> None:
    """Raise ConfigError unless ``allowed`` is a bool mask (Z,) or (n_rows, Z), with a decision in every
    row if ``nonempty``."""
    shape = tuple(allowed.shape)
    check(allowed.dtype == torch.bool, field, str(allowed.dtype), "must be a bool tensor")
    check(shape in ((n_options,), (n_rows, n_options)), field, shape,
          f"must have shape ({n_options},) or {(n_rows, n_options)}")
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


def necessary_decisions(smdp: SMDP, eps: float) -> torch.Tensor:
    """(Z,) bool: the decisions whose removal alone, from the full set, costs more than eps in expected
    pruning error. Every eps-good set contains all of them (the error only grows as a set shrinks)."""
    return expected_pruning_errors(smdp, ~torch.eye(smdp.n_options, dtype=torch.bool)) > eps + ERROR_TOL


@dataclass(frozen=True)
class ZEps:
    """Z_eps: mask (Z,) bool; size |Z_eps|; expected_error E_M[Delta(M, Z_eps)]; exact: True if it is truly
    a smallest eps-good set, False if found by greedy forward selection; necessary: True if it is the set
    of necessary decisions, so that a set is eps-good if and only if it contains mask."""

    mask: torch.Tensor
    size: int
    expected_error: float
    exact: bool
    necessary: bool = False


def _masks_with(base: torch.Tensor, combos: list[tuple[int, ...]], free: torch.Tensor) -> torch.Tensor:
    """(len(combos), Z) copies of ``base`` with the decisions ``free[combo]`` added."""
    masks = base.expand(len(combos), len(base)).clone()
    for row, combo in enumerate(combos):
        masks[row, free[list(combo)]] = True
    return masks


def z_eps(smdp: SMDP, eps: float, exact_max_options: int = 12) -> ZEps:
    """The smallest subset Z' with E_M[Delta(M, Z')] <= eps.

    First the necessary decisions N (``necessary_decisions``, Z value iterations): every eps-good set
    contains N, so if N is eps-good it is the unique smallest one (exact at any Z, ``necessary=True``).
    Otherwise, with at most ``exact_max_options`` other decisions, enumerate supersets of N by size (all
    of one size in one batched value iteration) and return the lowest expected error among the smallest
    feasible ones. Beyond that, greedy forward selection from N: add the decision that lowers the
    expected error most (ties: lowest index) until it is <= eps. Greedy can overshoot |Z_eps| when
    decisions only help together (e.g. a goal needs two of them), hence ``exact=False``.
    """
    check(eps >= 0, "eps", eps, "must be >= 0")
    check(exact_max_options >= 0, "exact_max_options", exact_max_options, "must be >= 0")
    mask = necessary_decisions(smdp, eps)
    error = float(expected_pruning_errors(smdp, mask.unsqueeze(0))[0])
    if error <= eps + ERROR_TOL:
        return ZEps(mask, int(mask.sum()), error, exact=True, necessary=True)
    free = (~mask).nonzero().squeeze(1)
    if len(free) <= exact_max_options:
        for size in range(1, len(free) + 1):
            masks = _masks_with(mask, list(itertools.combinations(range(len(free)), size)), free)
            errors = expected_pruning_errors(smdp, masks)
            best = int(errors.argmin())
            if errors[best] <= eps + ERROR_TOL:
                return ZEps(masks[best], int(masks[best].sum()), float(errors[best]), exact=True)
    while error > eps + ERROR_TOL:
        free = (~mask).nonzero().squeeze(1)
        masks = _masks_with(mask, [(i,) for i in range(len(free))], free)
        errors = expected_pruning_errors(smdp, masks)
        best = int(errors.argmin())
        mask, error = masks[best], float(errors[best])
    return ZEps(mask, int(mask.sum()), error, exact=False)


@dataclass(frozen=True)
class ExpertData:
    """n expert samples: task (n,) long, the task of each; counts (n, Z) int64, how often each decision
    was revealed in each sample. The data of the first n' samples is ``counts[:n'].sum(0)``."""

    task: torch.Tensor
    counts: torch.Tensor


def _check_expert(smdp: SMDP, sigma: float, horizon: int | None, noise_model: str, noise: float,
                  distractors: torch.Tensor | None) -> None:
    check(0 < sigma <= 1, "sigma", sigma, "must lie in (0, 1]")
    check(horizon is None or horizon >= 1, "horizon", horizon, "must be >= 1 (or None for 4 * n_states)")
    check_choice("noise_model", noise_model, NOISE_MODELS)
    check(0 <= noise <= 1, "noise", noise, "must lie in [0, 1]")
    check(noise_model != "none" or noise == 0, "noise", noise, "noise_model 'none' takes noise 0")
    if noise_model != "none":
        check(distractors is not None, "distractors", None, f"noise_model {noise_model!r} needs the distractor mask")
        assert distractors is not None
        check(distractors.dtype == torch.bool and tuple(distractors.shape) == (smdp.n_options,), "distractors",
              (str(distractors.dtype), tuple(distractors.shape)), f"must be a bool mask of shape ({smdp.n_options},)")


def noise_reveal_probabilities(noise_model: str, noise: float, distractors: torch.Tensor | None,
                               n_options: int) -> torch.Tensor:
    """(Z,) float64: the exact probability that the noise model reveals each decision in one sample:
    ``noise`` for each distractor (per_distractor), ``noise / D`` for each of the D distractors (budget)."""
    if noise_model == "none":
        return torch.zeros(n_options, dtype=torch.float64)
    assert distractors is not None, f"noise_model {noise_model!r} needs the distractor mask"
    share = 1.0 if noise_model == "per_distractor" else 1.0 / max(1, int(distractors.sum()))
    return distractors.double() * noise * share


def _noise_counts(widths: torch.Tensor, noise_model: str, noise: float, distractors: torch.Tensor | None,
                  n_options: int, generator: torch.Generator) -> torch.Tensor:
    """(R, Z) long: the distractors the noise model reveals in R blocks of ``widths`` (R,) samples each
    (``NOISE_MODELS``): per_distractor, Binomial(width, noise) reveals of each distractor; budget,
    Binomial(width, noise) reveals, each of a distractor drawn uniformly."""
    counts = torch.zeros(len(widths), n_options, dtype=torch.long)
    index = torch.zeros(0, dtype=torch.long) if distractors is None else distractors.nonzero().squeeze(1)
    if noise_model == "none" or len(index) == 0:
        return counts
    if noise_model == "per_distractor":
        trials = widths.double().unsqueeze(1).expand(-1, len(index)).contiguous()
        counts[:, index] = torch.binomial(trials, torch.full_like(trials, noise), generator=generator).long()
        return counts
    events = torch.binomial(widths.double(), torch.full((len(widths),), float(noise), dtype=torch.float64),
                            generator=generator).long()
    rows = torch.repeat_interleave(torch.arange(len(widths)), events)
    picks = index[torch.randint(len(index), (len(rows),), generator=generator)]
    return counts.index_put_((rows, picks), torch.ones_like(rows), accumulate=True)


def _expert_reveals(smdp: SMDP, n_samples: int, sigma: float, generator: torch.Generator,
                    terminal: torch.Tensor | None, horizon: int | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(task (n,), sample (E,), decision (E,)): the task of each of n expert samples and the E decisions
    they reveal, drawn ``EXPERT_CHUNK`` samples at a time (the random stream depends on n, not on Z)."""
    B, S = len(smdp), smdp.n_states
    if terminal is not None:
        check(tuple(terminal.shape) == (B, S), "terminal", tuple(terminal.shape), f"must have shape {(B, S)}")
    terminal = torch.zeros(B, S, dtype=torch.bool) if terminal is None else terminal
    policy = bellman_q(smdp, optimal_values(smdp)).argmax(1)                    # (B, S)
    cdf = (smdp.transitions / smdp.transitions.sum(-1, keepdim=True)).cumsum(-1)
    tasks, samples, decisions = [], [], []
    for first in range(0, n_samples, EXPERT_CHUNK):
        n = min(EXPERT_CHUNK, n_samples - first)
        task = torch.randint(B, (n,), generator=generator)
        state = smdp.start[task]
        active = ~terminal[task, state]
        for _ in range(4 * S if horizon is None else horizon):
            if not active.any():
                break
            decision = policy[task, state]
            revealed = active & (torch.rand(n, generator=generator, dtype=torch.float64) < sigma)
            samples.append(first + revealed.nonzero().squeeze(1))
            decisions.append(decision[revealed])
            u = torch.rand(n, 1, generator=generator, dtype=cdf.dtype)            # inverse-CDF draw of the next state
            following = (cdf[task, decision, state] < u).sum(1).clamp(max=S - 1)
            state = torch.where(active, following, state)
            active &= ~terminal[task, state]
        tasks.append(task)
    empty = [torch.zeros(0, dtype=torch.long)]
    return torch.cat(tasks), torch.cat(samples or empty), torch.cat(decisions or empty)


def sample_expert_data(
    smdp: SMDP,
    n_samples: int,
    sigma: float,
    generator: torch.Generator,
    terminal: torch.Tensor | None = None,
    horizon: int | None = None,
    noise_model: str = "none",
    noise: float = 0.0,
    distractors: torch.Tensor | None = None,
) -> ExpertData:
    """Expert trajectories at option level, each decision revealed with probability ``sigma``, plus noise.

    A sample draws a task uniformly, follows its optimal policy (greedy in V*, ties to the lowest
    index) from s0 with next states drawn from the normalised option model ``P[b, z, s, :] / sum``
    (the gamma^tau-weighted law of where z ends), and stops at a ``terminal`` (B, S) state or after
    ``horizon`` decisions (default 4 S). Each decision is revealed independently with probability sigma.
    Noise (``NOISE_MODELS``) then reveals decisions of the (Z,) bool mask ``distractors`` (the decisions
    outside Z_eps): per_distractor reveals each distractor independently with probability ``noise`` in
    each sample (more distractors, more noise); budget reveals, with probability ``noise``, one
    distractor drawn uniformly (a fixed noise mass spread over the distractors). All expert draws come
    before the noise draws, so one seed gives the same expert decisions under every noise model.
    """
    check(n_samples >= 1, "n_samples", n_samples, "must be >= 1")
    _check_expert(smdp, sigma, horizon, noise_model, noise, distractors)
    Z = smdp.n_options
    task, sample, decision = _expert_reveals(smdp, n_samples, sigma, generator, terminal, horizon)
    counts = torch.zeros(n_samples, Z, dtype=torch.long).index_put_((sample, decision), torch.ones_like(sample),
                                                                     accumulate=True)
    ones = torch.ones(n_samples, dtype=torch.long)
    return ExpertData(task, counts + _noise_counts(ones, noise_model, noise, distractors, Z, generator))


def reveal_probabilities(smdp: SMDP, sigma: float, generator: torch.Generator, n_samples: int, terminal=None,
                         horizon: int | None = None, noise_model: str = "none", noise: float = 0.0,
                         distractors: torch.Tensor | None = None) -> torch.Tensor:
    """(Z,) float64 p_z, the probability that z is revealed at least once in one expert sample: the expert's
    part estimated from ``n_samples`` noise-free samples (an independent dataset), the noise model's part
    exact (``noise_reveal_probabilities``), the two independent: ``1 - (1 - expert)(1 - noise)``."""
    _check_expert(smdp, sigma, horizon, noise_model, noise, distractors)
    expert = (sample_expert_data(smdp, n_samples, sigma, generator, terminal, horizon).counts > 0).double().mean(0)
    return 1 - (1 - expert) * (1 - noise_reveal_probabilities(noise_model, noise, distractors, smdp.n_options))


def suboptimal_decisions(reveal: torch.Tensor, needed: torch.Tensor, ratio: float = SUBOPTIMAL_RATIO
                         ) -> tuple[torch.Tensor, float]:
    """((Z,) bool, sigma_needed): the (eps, sigma)-suboptimal decisions, those outside ``needed`` (Z_eps,
    (Z,) bool) with reveal probability p_z < ratio * sigma_needed, where sigma_needed = min over Z_eps of
    p_z (1 when Z_eps is empty: then nothing is needed and every rarely revealed decision is suboptimal)."""
    check(0 < ratio <= 1, "ratio", ratio, "must lie in (0, 1]")
    sigma_needed = float(reveal[needed].min()) if bool(needed.any()) else 1.0
    return ~needed & (reveal < ratio * sigma_needed), sigma_needed


def _check_rule(rule: str, threshold: float, k: int | None) -> None:
    check_choice("rule", rule, PRUNING_RULES)
    check(0 <= threshold <= 1, "threshold", threshold, "must lie in [0, 1]")
    check(k is None or k >= 1, "k", k, "must be >= 1")
    check(rule != "top_k" or k is not None, "k", k, "rule 'top_k' needs k >= 1")


def prune(counts: torch.Tensor, rule: str, threshold: float = 0.0, k: int | None = None) -> torch.Tensor:
    """Z_hat as a bool mask shaped like counts: (Z,), or (..., Z) for stacked datasets (e.g. prefixes).

    observed: count >= 1. frequency: count >= 1 and count / total >= threshold (threshold 0 is
    "observed"). top_k: the k most frequent observed decisions, ties to the lower index.
    A decision never seen in the data is never kept, so a row can come out empty (``full_where_empty``).
    """
    _check_rule(rule, threshold, k)
    observed = counts >= 1
    if rule == "observed":
        return observed
    if rule == "frequency":
        total = counts.sum(-1, keepdim=True).clamp(min=1)
        return observed & (counts >= threshold * total)
    assert k is not None                                           # rule "top_k", checked above
    Z = counts.shape[-1]
    key = counts * Z + torch.arange(Z - 1, -1, -1)                 # larger count first, then lower index
    top = torch.zeros_like(observed).scatter_(-1, key.topk(min(k, Z), dim=-1).indices, True)
    return top & observed


def full_where_empty(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(masks, empty): pruned sets (..., Z) with every row that kept no decision (expert data that revealed
    nothing) replaced by the full set Z, and the bool (...) flags of the rows replaced, to count and report."""
    empty = ~masks.any(-1)
    return masks | empty.unsqueeze(-1), empty


def _check_sample_sizes(sample_sizes: list[int]) -> None:
    check(len(sample_sizes) >= 1 and all(n >= 1 for n in sample_sizes), "sample_sizes", list(sample_sizes),
          "need at least one size, each >= 1")
    check(all(a < b for a, b in itertools.pairwise(sample_sizes)), "sample_sizes", list(sample_sizes),
          "must be strictly increasing")


def prefix_counts(smdp: SMDP, trials: int, sample_sizes: list[int], sigma: float, generator: torch.Generator,
                  terminal: torch.Tensor | None = None, horizon: int | None = None, noise_model: str = "none",
                  noise: float = 0.0, distractors: torch.Tensor | None = None) -> torch.Tensor:
    """(trials, T, Z) long: the decision counts of the first n samples of each of ``trials`` independent
    expert datasets (as ``sample_expert_data`` draws them), at each of the T ``sample_sizes`` n.

    The expert's reveals are drawn sample by sample and binned by size; the noise between two sizes is
    drawn as one block of that many samples (the same law as sample by sample, far fewer draws)."""
    check(trials >= 1, "trials", trials, "must be >= 1")
    _check_sample_sizes(sample_sizes)
    _check_expert(smdp, sigma, horizon, noise_model, noise, distractors)
    n_max, Z, T = max(sample_sizes), smdp.n_options, len(sample_sizes)
    sizes = torch.tensor(sample_sizes)
    _, sample, decision = _expert_reveals(smdp, trials * n_max, sigma, generator, terminal, horizon)
    index = (sample // n_max, torch.searchsorted(sizes, sample % n_max, right=True), decision)
    counts = torch.zeros(trials, T, Z, dtype=torch.long).index_put_(index, torch.ones_like(sample), accumulate=True)
    widths = torch.diff(sizes, prepend=torch.zeros(1, dtype=torch.long)).repeat(trials)
    counts += _noise_counts(widths, noise_model, noise, distractors, Z, generator).view(trials, T, Z)
    return counts.cumsum(1)


def near_optimal(smdp: SMDP, masks: torch.Tensor, eps: float, target: ZEps) -> torch.Tensor:
    """(...) bool: E_M[Delta(M, Z')] <= eps for each mask (..., Z). With ``target.necessary`` this is
    "contains Z_eps" (exact, no value iteration); otherwise one value iteration per distinct mask."""
    if target.necessary:
        return (masks | ~target.mask).all(-1)
    Z = masks.shape[-1]
    distinct, inverse = torch.unique(masks.reshape(-1, Z), dim=0, return_inverse=True)
    return (expected_pruning_errors(smdp, distinct) <= eps + ERROR_TOL)[inverse].view(masks.shape[:-1])


def first_sustained(sample_sizes: list[int], success: list[float], delta: float) -> int | None:
    """The smallest size from which ``success`` stays >= 1 - delta up to the largest size (None if never):
    a rule whose success falls again with more data (e.g. "observed" under noise) has not reached it."""
    reached = None
    for n, p in zip(sample_sizes, success):
        reached = (reached or n) if p >= 1 - delta else None
    return reached


CRITERIA = ("success", "near_optimal", "compact")


def pruning_curves(smdp: SMDP, prefixes: torch.Tensor, sample_sizes: list[int], rule: str, eps: float, delta: float,
                   target: ZEps, suboptimal: torch.Tensor, **rule_kwargs) -> dict:
    """How the pruned sets of expert datasets at growing sizes fare.

    prefixes: (trials, T, Z) counts at ``sample_sizes`` (``prefix_counts``); rule and rule_kwargs as in
    ``prune``; rows that kept nothing fall back to the full set (``full_where_empty``) and are counted.
    target: Z_eps; suboptimal: (Z,) bool (``suboptimal_decisions``). Returns, per criterion in CRITERIA
    (success = near_optimal and compact), its curve (T,) P(criterion) over trials and ``n_<criterion>``,
    the first size from which it stays >= 1 - delta (``first_sustained``); mean_size (T,) mean |Z_hat|;
    empty (T,) the number of fallback rows at each size, empty_total their sum.
    """
    check(eps >= 0, "eps", eps, "must be >= 0")
    check(0 < delta < 1, "delta", delta, "must lie in (0, 1)")
    check(prefixes.dim() == 3 and prefixes.shape[1] == len(sample_sizes), "prefixes", tuple(prefixes.shape),
          f"must be (trials, {len(sample_sizes)} sizes, Z)")
    check(set(rule_kwargs) <= {"threshold", "k"}, "rule_kwargs", sorted(rule_kwargs), "only threshold and k")
    masks, empty = full_where_empty(prune(prefixes, rule, **rule_kwargs))
    outcome = {"near_optimal": near_optimal(smdp, masks, eps, target), "compact": ~(masks & suboptimal).any(-1)}
    outcome["success"] = outcome["near_optimal"] & outcome["compact"]
    result: dict[str, list[float] | int | None] = {}
    for criterion in CRITERIA:
        curve = outcome[criterion].double().mean(0).tolist()
        result[criterion] = curve
        result[f"n_{criterion}"] = first_sustained(sample_sizes, curve, delta)
    empty_counts = empty.sum(0).tolist()
    return result | {"mean_size": masks.sum(-1).double().mean(0).tolist(), "empty": empty_counts,
                     "empty_total": int(sum(empty_counts))}
