"""Pruning error, Z_eps, noisy expert data, pruning rules and the two success criteria (Theorem 3.5 machinery)."""

import itertools

import pytest
import torch

from ra3lab.envs.random_dense import random_dense
from ra3lab.envs.star import star
from ra3lab.errors import ConfigError
from ra3lab.mdp import pruning
from ra3lab.mdp.planning import optimal_values, start_values
from ra3lab.mdp.pruning import (
    PRUNING_RULES,
    expected_pruning_errors,
    first_sustained,
    full_where_empty,
    near_optimal,
    necessary_decisions,
    prefix_counts,
    prune,
    pruning_curves,
    pruning_error,
    reveal_probabilities,
    sample_expert_data,
    suboptimal_decisions,
    z_eps,
)
from ra3lab.mdp.smdp import DTYPE, SMDP, MDPBatch, Options, option_models
from ra3lab.studies.common import generator


@pytest.fixture(scope="module")
def dense():
    return random_dense(n_tasks=4, n_states=5, n_actions=3, n_options=6, gamma=0.9, seed=3).abstract


def line(n_states: int = 6):
    """Deterministic goal line: actions left/right, reward 1 on entering the absorbing right end."""
    P = torch.zeros(2, n_states, n_states, dtype=DTYPE)
    for s in range(n_states - 1):
        P[0, s, max(s - 1, 0)] = 1
        P[1, s, s + 1] = 1
    P[:, -1, -1] = 1
    R = P[:, :, -1].clone()
    R[:, -1] = 0
    terminal = torch.zeros(1, n_states, dtype=torch.bool)
    terminal[0, -1] = True
    mdps = MDPBatch(P.unsqueeze(0), R.unsqueeze(0), torch.zeros(1, dtype=torch.long), 0.9)
    return option_models(mdps, Options.primitive(2, ("left", "right"))), terminal


def all_masks(n_options: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([False, True], repeat=n_options)))


def test_pruning_error_is_zero_for_the_full_set_and_nonnegative(dense):
    Z = dense.n_options
    assert torch.equal(pruning_error(dense, torch.ones(Z, dtype=torch.bool)), torch.zeros(len(dense), dtype=DTYPE))
    masks = all_masks(Z)
    B, M = len(dense), len(masks)
    pairs = dense.select(torch.arange(B).repeat(M))                    # every (mask, task) pair in one batch
    deltas = pruning_error(pairs, masks.repeat_interleave(B, 0)).view(M, B)
    assert deltas.min() >= -1e-12
    v_star = start_values(dense, optimal_values(dense))
    assert torch.allclose(deltas[0], v_star)                            # empty set: V*_{M|{}} = 0
    superset_pairs = [(a, b) for a, b in itertools.product(range(len(masks)), repeat=2)
                      if bool((masks[a] <= masks[b]).all())]
    assert all(bool((deltas[b] <= deltas[a] + 1e-12).all()) for a, b in superset_pairs)   # more options, less error


def test_pruning_error_accepts_one_mask_per_task(dense):
    masks = torch.rand(len(dense), dense.n_options, generator=torch.Generator().manual_seed(0)) < 0.5
    per_task = pruning_error(dense, masks)
    one_by_one = torch.stack([pruning_error(dense, mask)[b] for b, mask in enumerate(masks)])
    assert torch.allclose(per_task, one_by_one, atol=1e-12)


def test_expected_errors_are_batched_means_in_any_chunking(dense, monkeypatch):
    masks = all_masks(dense.n_options)[::5]
    reference = torch.stack([pruning_error(dense, mask).mean() for mask in masks])
    assert torch.allclose(expected_pruning_errors(dense, masks), reference, atol=1e-12)
    monkeypatch.setattr(pruning, "CHUNK_ELEMENTS", 1)                  # one mask per chunk
    assert torch.allclose(expected_pruning_errors(dense, masks), reference, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_z_eps_exact_equals_brute_force(dense, eps):
    masks = all_masks(dense.n_options)
    errors = expected_pruning_errors(dense, masks)
    feasible = errors <= eps + 1e-10
    smallest = int(masks[feasible].sum(1).min())
    result = z_eps(dense, eps)
    assert result.exact and result.size == smallest == int(result.mask.sum())
    same_size = feasible & (masks.sum(1) == smallest)
    assert result.expected_error == pytest.approx(float(errors[same_size].min()), abs=1e-12)


def test_z_eps_greedy_is_feasible_but_flagged_inexact(dense):
    exact, greedy = z_eps(dense, 0.05), z_eps(dense, 0.05, exact_max_options=0)
    assert not greedy.exact and greedy.expected_error <= 0.05 + 1e-10
    assert greedy.size >= exact.size and greedy.size == int(greedy.mask.sum())


def options_smdp(routes: list[tuple[int, int, float]], n_states: int) -> SMDP:
    """One task; option z moves start -> end earning its reward (discount 0.9), elsewhere it stays put."""
    P = torch.zeros(1, len(routes), n_states, n_states, dtype=DTYPE)
    R = torch.zeros(1, len(routes), n_states, dtype=DTYPE)
    for z, (start, end, reward) in enumerate(routes):
        P[0, z] = 0.9 * torch.eye(n_states, dtype=DTYPE)
        P[0, z, start] = 0.9 * torch.nn.functional.one_hot(torch.tensor(end), n_states)
        R[0, z, start] = reward
    return SMDP(P, R, torch.zeros(1, dtype=torch.long), 0.9)


def test_necessary_decisions_make_z_eps_exact_at_any_size():
    """States start, middle, goal. A: start -> middle; B: middle -> goal, reward 1; C: start -> goal, reward
    0.5. Without A or B the best is C's 0.5 (error 0.4 > 0.1): both are necessary and together suffice."""
    smdp = options_smdp([(0, 1, 0.0), (1, 2, 1.0), (0, 2, 0.5)], 3)
    assert necessary_decisions(smdp, 0.1).tolist() == [True, True, False]
    result = z_eps(smdp, 0.1, exact_max_options=0)                   # no enumeration allowed, still exact
    assert result.mask.tolist() == [True, True, False] and result.exact and result.necessary
    assert result.expected_error == pytest.approx(0.0, abs=1e-12)


def test_greedy_overshoots_when_decisions_substitute_for_each_other():
    """Two routes start -> goal: A then B, or C then D (value 0.9 each), and E: start -> goal, reward 0.5.
    No single decision is necessary (the other route remains); greedy takes E first, then needs A and B."""
    smdp = options_smdp([(0, 1, 0.0), (1, 3, 1.0), (0, 2, 0.0), (2, 3, 1.0), (0, 3, 0.5)], 4)
    assert not necessary_decisions(smdp, 0.1).any()
    exact, greedy = z_eps(smdp, 0.1), z_eps(smdp, 0.1, exact_max_options=0)
    assert exact.mask.tolist() == [True, True, False, False, False] and exact.exact and not exact.necessary
    assert greedy.mask.tolist() == [True, True, False, False, True] and not greedy.exact


@pytest.mark.parametrize("n_corridors, n_goals, n_distractors", [(4, 2, 3), (6, 3, 20)])
def test_z_eps_of_star_mazes_are_their_goal_corridors(n_corridors, n_goals, n_distractors):
    family = star(n_tasks=6, n_corridors=n_corridors, n_goal_corridors=n_goals, n_distractors=n_distractors)
    result = z_eps(family.abstract, 0.02, exact_max_options=0)
    assert result.necessary and result.exact
    assert result.mask.nonzero().squeeze(1).tolist() == family.meta["needed_options"]


def test_near_optimal_by_containment_agrees_with_value_iteration():
    smdp = star(n_tasks=6, n_corridors=4, n_goal_corridors=2, n_distractors=2).abstract
    target = z_eps(smdp, 0.02)
    masks = all_masks(smdp.n_options)
    exact = expected_pruning_errors(smdp, masks) <= 0.02 + 1e-10
    assert target.necessary and torch.equal(near_optimal(smdp, masks, 0.02, target), exact)
    assert 0 < int(exact.sum()) < len(masks)
    substitutes = options_smdp([(0, 1, 0.0), (1, 3, 1.0), (0, 2, 0.0), (2, 3, 1.0), (0, 3, 0.5)], 4)
    masks = all_masks(5).view(4, 8, 5)                                    # any leading shape
    reference = (expected_pruning_errors(substitutes, masks.view(-1, 5)) <= 0.1 + 1e-10).view(4, 8)
    assert torch.equal(near_optimal(substitutes, masks, 0.1, z_eps(substitutes, 0.1)), reference)


def test_z_eps_is_empty_when_eps_exceeds_the_optimal_value(dense):
    v_star = float(start_values(dense, optimal_values(dense)).mean())
    for limit in (12, 0):
        result = z_eps(dense, v_star + 1e-6, exact_max_options=limit)
        assert result.size == 0 and not result.mask.any()


def test_z_eps_rejects_negative_eps(dense):
    with pytest.raises(ConfigError, match="^eps = -0.1"):
        z_eps(dense, -0.1)


def test_prune_rules_on_hand_made_counts():
    counts = torch.tensor([3, 0, 1, 1, 5])                             # total 10
    assert prune(counts, "observed").tolist() == [True, False, True, True, True]
    assert prune(counts, "frequency", threshold=0.2).tolist() == [True, False, False, False, True]
    assert torch.equal(prune(counts, "frequency", threshold=0.0), prune(counts, "observed"))
    assert prune(counts, "top_k", k=2).tolist() == [True, False, False, False, True]
    assert prune(counts, "top_k", k=3).tolist() == [True, False, True, False, True]      # tie 2 vs 3: lower index
    assert torch.equal(prune(counts, "top_k", k=10), prune(counts, "observed"))          # never an unseen decision
    stacked = torch.stack([counts, torch.zeros(5, dtype=torch.long), torch.tensor([0, 2, 0, 0, 0])])
    assert prune(stacked, "top_k", k=1).tolist() == [[False, False, False, False, True], [False] * 5,
                                                     [False, True, False, False, False]]
    assert not prune(stacked, "frequency", threshold=0.5)[1].any()


@pytest.mark.parametrize("kwargs, field", [
    ({"rule": "majority"}, "rule"), ({"rule": "top_k"}, "k"), ({"rule": "top_k", "k": 0}, "k"),
    ({"rule": "frequency", "threshold": 1.5}, "threshold"),
])
def test_prune_rejects_bad_rules(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field} = ") as error:
        prune(torch.tensor([1, 2]), **kwargs)
    if field == "rule":
        assert all(rule in str(error.value) for rule in PRUNING_RULES)


def test_expert_with_sigma_one_reveals_every_decision_of_the_optimal_trajectory():
    smdp, terminal = line(6)
    data = sample_expert_data(smdp, 20, 1.0, torch.Generator().manual_seed(0), terminal)
    assert data.counts.tolist() == [[0, 5]] * 20                       # "right" five times, then the goal
    assert data.task.tolist() == [0] * 20


def test_expert_reveals_each_decision_with_probability_sigma():
    smdp, terminal = line(6)
    data = sample_expert_data(smdp, 4000, 0.3, torch.Generator().manual_seed(1), terminal)
    assert data.counts[:, 0].sum() == 0 and data.counts[:, 1].max() <= 5
    assert float(data.counts[:, 1].double().mean()) == pytest.approx(5 * 0.3, abs=0.06)


def planted_star(n_distractors: int = 2):
    """A star maze whose Z_eps is corridors 1-2 of 4; distractors: the two other corridors and the options."""
    family = star(n_tasks=8, n_corridors=4, n_goal_corridors=2, n_distractors=n_distractors)
    target = z_eps(family.abstract, 0.02)
    return family, target, ~target.mask


def test_per_distractor_noise_reveals_each_distractor_with_its_rate():
    family, target, distractors = planted_star()
    noise = {"noise_model": "per_distractor", "noise": 0.2, "distractors": distractors}
    data = sample_expert_data(family.abstract, 4000, 0.5, generator(0), family.meta["terminal"], **noise)
    rates = (data.counts > 0).double().mean(0)
    assert torch.allclose(rates[distractors], torch.full((4,), 0.2, dtype=DTYPE), atol=0.025)
    clean = sample_expert_data(family.abstract, 4000, 0.5, generator(0), family.meta["terminal"])
    assert torch.equal(data.counts[:, target.mask], clean.counts[:, target.mask])   # the expert's draws come first
    larger, target, distractors = planted_star(8)
    more = sample_expert_data(larger.abstract, 4000, 0.5, generator(0), larger.meta["terminal"],
                              **(noise | {"distractors": distractors}))
    per_sample = [float(d.counts[:, ~t.mask].sum(1).double().mean())
                  for d, t in ((data, planted_star()[1]), (more, target))]
    assert per_sample == pytest.approx([4 * 0.2, 10 * 0.2], rel=0.05)  # more distractors, more noise per sample


def test_budget_noise_reveals_one_distractor_with_its_rate_spread_uniformly():
    family, _, distractors = planted_star(8)
    data = sample_expert_data(family.abstract, 40000, 0.5, generator(1), family.meta["terminal"],
                              noise_model="budget", noise=0.3, distractors=distractors)
    noise = data.counts[:, distractors]
    assert noise.sum(1).max() == 1                                       # at most one noisy reveal per sample
    assert float(noise.sum(1).double().mean()) == pytest.approx(0.3, abs=0.01)
    assert torch.allclose(noise.double().mean(0), torch.full((10,), 0.03, dtype=DTYPE), atol=0.004)


@pytest.mark.parametrize("model, rate", [("per_distractor", 0.1), ("budget", 0.4)])
def test_reveal_probabilities_match_the_sampled_frequencies(model, rate):
    family, target, distractors = planted_star()
    noise = {"noise_model": model, "noise": rate, "distractors": distractors}
    reveal = reveal_probabilities(family.abstract, 0.6, generator(2), 20000, family.meta["terminal"], **noise)
    data = sample_expert_data(family.abstract, 20000, 0.6, generator(3), family.meta["terminal"], **noise)
    assert torch.allclose(reveal, (data.counts > 0).double().mean(0), atol=0.015)
    assert torch.allclose(reveal[target.mask], torch.full((2,), 0.3, dtype=DTYPE), atol=0.015)   # sigma x 1/2 of tasks


def test_prefix_counts_are_the_cumulative_counts_of_the_same_draws():
    family, target, distractors = planted_star()
    sizes, trials, Z = [1, 3, 10, 40], 5, len(family.options)
    prefixes = prefix_counts(family.abstract, trials, sizes, 0.5, generator(4), family.meta["terminal"])
    data = sample_expert_data(family.abstract, trials * 40, 0.5, generator(4), family.meta["terminal"])
    assert torch.equal(prefixes, data.counts.view(trials, 40, Z).cumsum(1)[:, torch.tensor(sizes) - 1])
    noisy = prefix_counts(family.abstract, 400, [5, 50], 0.5, generator(5), family.meta["terminal"],
                          noise_model="per_distractor", noise=0.1, distractors=distractors)
    assert torch.equal(noisy[:, :, target.mask], prefixes_of(family, 400, [5, 50], generator(5))[:, :, target.mask])
    assert float(noisy[:, 1, distractors].double().mean()) == pytest.approx(5.0, rel=0.05)   # 50 samples x 0.1


def prefixes_of(family, trials, sizes, rng):
    return prefix_counts(family.abstract, trials, sizes, 0.5, rng, family.meta["terminal"])


def test_suboptimal_decisions_are_distractors_rarer_than_the_rarest_needed_one():
    reveal = torch.tensor([0.5, 0.3, 0.2, 0.14, 0.16, 0.0], dtype=DTYPE)
    needed = torch.tensor([True, True, False, False, False, False])
    suboptimal, sigma_needed = suboptimal_decisions(reveal, needed)
    assert sigma_needed == 0.3 and suboptimal.tolist() == [False, False, False, True, False, True]
    assert suboptimal_decisions(reveal, needed, ratio=1.0)[0].tolist() == [False, False, True, True, True, True]
    assert suboptimal_decisions(reveal, torch.zeros(6, dtype=torch.bool))[1] == 1.0
    with pytest.raises(ConfigError, match="^ratio = "):
        suboptimal_decisions(reveal, needed, ratio=0.0)


def test_expert_tasks_are_uniform_and_horizon_caps_trajectories(dense):
    data = sample_expert_data(dense, 2000, 1.0, torch.Generator().manual_seed(3), horizon=7)
    assert torch.equal(data.counts.sum(1), torch.full((2000,), 7))    # no terminal states: always 7 decisions
    shares = torch.bincount(data.task, minlength=len(dense)).double() / 2000
    assert torch.allclose(shares, torch.full((len(dense),), 1 / len(dense), dtype=DTYPE), atol=0.04)


@pytest.mark.parametrize("kwargs, field", [
    ({"sigma": 0.0}, "sigma"), ({"noise": 1.5, "noise_model": "budget"}, "noise"), ({"noise": 0.1}, "noise"),
    ({"noise_model": "uniform"}, "noise_model"), ({"noise_model": "budget", "noise": 0.1}, "distractors"),
    ({"noise_model": "budget", "distractors": torch.ones(2, dtype=torch.bool)}, "distractors"),
    ({"horizon": 0}, "horizon"), ({"n_samples": 0}, "n_samples"),
])
def test_expert_sampling_rejects_bad_inputs(dense, kwargs, field):
    arguments = {"n_samples": 3, "sigma": 0.5} | kwargs
    with pytest.raises(ConfigError, match=f"^{field} = "):
        sample_expert_data(dense, generator=torch.Generator(), **arguments)


def curves_of(family, target, rule, sigma=1.0, noise=None, sizes=(1, 4, 16, 64, 256), trials=40, **kwargs):
    """pruning_curves of ``trials`` datasets of the planted star at ``sizes``."""
    noise = noise or {}
    distractors = ~target.mask
    reveal = reveal_probabilities(family.abstract, sigma, generator(10), 4000, family.meta["terminal"],
                                  distractors=distractors, **noise)
    suboptimal, _ = suboptimal_decisions(reveal, target.mask)
    prefixes = prefix_counts(family.abstract, trials, list(sizes), sigma, generator(11), family.meta["terminal"],
                             distractors=distractors, **noise)
    return pruning_curves(family.abstract, prefixes, list(sizes), rule, 0.02, 0.1, target, suboptimal, **kwargs)


def test_observed_with_noise_free_experts_never_keeps_a_distractor():
    family, target, distractors = planted_star()
    prefixes = prefix_counts(family.abstract, 50, [1, 8, 64, 512], 0.3, generator(12), family.meta["terminal"])
    assert not (prune(prefixes, "observed") & distractors).any()
    result = curves_of(family, target, "observed")
    assert result["compact"] == [1 - e / 40 for e in result["empty"]]  # only the full-set fallback keeps one
    assert result["n_success"] == result["n_near_optimal"] in (4, 16)  # all 2 goals seen: 1 - 2 / 2^n


def test_a_planted_distractor_revealed_often_fails_compactness_not_near_optimality():
    """Distractors revealed with rate 0.2 < 1/2 x 0.5 (the rarest needed decision's rate) are suboptimal:
    "observed" keeps them, so it never succeeds although its sets are as near-optimal as without noise."""
    family, target, _ = planted_star()
    clean = curves_of(family, target, "observed")
    noisy = curves_of(family, target, "observed", noise={"noise_model": "per_distractor", "noise": 0.2})
    assert noisy["near_optimal"] == clean["near_optimal"] and noisy["near_optimal"][-1] == 1.0
    assert noisy["compact"][-1] == 0.0 and noisy["n_success"] is None and noisy["n_compact"] is None
    assert clean["n_success"] is not None
    ambiguous = curves_of(family, target, "observed", noise={"noise_model": "per_distractor", "noise": 0.3})
    assert ambiguous["n_success"] == clean["n_success"]                   # 0.3 >= 1/2 x 0.5: not suboptimal


def test_frequency_between_the_noise_and_the_needed_share_recovers_compactness():
    """Per sample, a needed decision holds 0.5 / 1.8 of the revealed decisions, a distractor 0.2 / 1.8."""
    family, target, _ = planted_star()
    noise = {"noise_model": "per_distractor", "noise": 0.2}
    between = curves_of(family, target, "frequency", noise=noise, threshold=0.2)
    assert between["n_success"] is not None and between["success"][-1] == 1.0
    below = curves_of(family, target, "frequency", noise=noise, threshold=0.05)
    assert below["n_success"] is None and below["compact"][-1] == 0.0
    above = curves_of(family, target, "frequency", noise=noise, threshold=0.35)   # drops everything
    assert above["n_success"] is None and above["empty"][-1] == 40 and above["compact"][-1] == 0.0


def test_empty_rows_fall_back_to_the_full_set_and_are_counted():
    family, target, _ = planted_star()
    result = curves_of(family, target, "top_k", sigma=0.05, sizes=(1, 2, 400), k=2)
    assert result["empty"][0] > 30 and result["empty"][-1] == 0 and result["empty_total"] == sum(result["empty"])
    fallback = result["empty"][0] / 40                     # a fallback row is near-optimal and keeps every distractor
    assert result["near_optimal"][0] == fallback and result["compact"][0] == pytest.approx(1 - fallback)


def test_near_optimality_needs_fewer_samples_as_sigma_grows(dense):
    target, sizes = z_eps(dense, 0.02), [1, 2, 4, 8, 16, 32, 64, 128]
    required = []
    for sigma in (0.05, 0.25, 1.0):
        prefixes = prefix_counts(dense, 40, sizes, sigma, generator(4))
        result = pruning_curves(dense, prefixes, sizes, "observed", 0.02, 0.2, target, torch.zeros(6, dtype=torch.bool))
        seen = result["empty"].index(0)                       # once no row is empty, prefixes only grow Z_hat
        assert all(a <= b for a, b in itertools.pairwise(result["near_optimal"][seen:]))
        required.append(result["n_near_optimal"])
    assert None not in required and required[0] > required[1] >= required[2]


def test_first_sustained_needs_success_to_last():
    sizes = [1, 2, 4, 8, 16]
    assert first_sustained(sizes, [0.5, 0.95, 0.8, 0.92, 0.96], 0.1) == 8
    assert first_sustained(sizes, [0.95, 0.95, 0.95, 0.95, 0.5], 0.1) is None
    assert first_sustained(sizes, [0.9, 0.9, 0.9, 0.9, 0.9], 0.1) == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"eps": -1.0}, "eps"), ({"delta": 1.0}, "delta"), ({"sample_sizes": [1]}, "prefixes"),
    ({"rule": "all"}, "rule"), ({"rule": "top_k"}, "k"), ({"thresh": 0.1}, "rule_kwargs"),
])
def test_pruning_curves_reject_bad_inputs(dense, kwargs, field):
    arguments = {"prefixes": torch.zeros(2, 2, 6, dtype=torch.long), "sample_sizes": [1, 2], "rule": "observed",
                 "eps": 0.1, "delta": 0.1, "target": z_eps(dense, 0.1),
                 "suboptimal": torch.zeros(6, dtype=torch.bool)} | kwargs
    with pytest.raises(ConfigError, match=f"^{field} = "):
        pruning_curves(dense, **arguments)


@pytest.mark.parametrize("kwargs, field", [({"trials": 0}, "trials"), ({"sample_sizes": [4, 2]}, "sample_sizes"),
                                           ({"sample_sizes": []}, "sample_sizes"), ({"sigma": 1.5}, "sigma")])
def test_prefix_counts_reject_bad_inputs(dense, kwargs, field):
    arguments = {"trials": 2, "sample_sizes": [1, 2], "sigma": 0.5} | kwargs
    with pytest.raises(ConfigError, match=f"^{field} = "):
        prefix_counts(dense, generator=torch.Generator(), **arguments)


def test_rows_that_kept_nothing_fall_back_to_the_full_set_and_are_flagged():
    counts = torch.tensor([[0, 0, 0], [2, 0, 1], [0, 0, 0]])
    masks, empty = full_where_empty(prune(counts, "observed"))
    assert empty.tolist() == [True, False, True]
    assert masks.tolist() == [[True, True, True], [True, False, True], [True, True, True]]
