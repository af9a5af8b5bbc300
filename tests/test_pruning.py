"""Pruning error, Z_eps, expert data, pruning rules and samples-to-eps (Theorem 3.5 machinery)."""

import itertools

import pytest
import torch

from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import ConfigError
from ra3lab.mdp import pruning
from ra3lab.mdp.planning import optimal_values, start_values
from ra3lab.mdp.pruning import (
    PRUNING_RULES,
    expected_pruning_errors,
    full_where_empty,
    prune,
    pruning_error,
    sample_expert_data,
    samples_to_eps,
    z_eps,
)
from ra3lab.mdp.smdp import DTYPE, SMDP, MDPBatch, Options, option_models


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


def test_greedy_overshoots_when_options_only_help_together():
    """States start, middle, goal (absorbing). A: start -> middle; B: middle -> goal, reward 1;
    C: start -> goal, reward 0.5. Alone, C is best; together, A and B earn 0.9."""
    P = torch.zeros(1, 3, 3, 3, dtype=DTYPE)
    R = torch.zeros(1, 3, 3, dtype=DTYPE)
    for z, (start, end) in enumerate([(0, 1), (1, 2), (0, 2)]):
        P[0, z, :, :] = 0.9 * torch.eye(3, dtype=DTYPE)              # elsewhere an option leaves the state alone
        P[0, z, start] = 0.9 * torch.nn.functional.one_hot(torch.tensor(end), 3)
    R[0, 1, 1], R[0, 2, 0] = 1.0, 0.5
    smdp = SMDP(P, R, torch.zeros(1, dtype=torch.long), 0.9)
    exact, greedy = z_eps(smdp, 0.1), z_eps(smdp, 0.1, exact_max_options=0)
    assert exact.mask.tolist() == [True, True, False] and exact.expected_error == pytest.approx(0.0, abs=1e-12)
    assert greedy.size == 3 and not greedy.exact


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


def test_noisy_expert_replaces_revealed_decisions_uniformly():
    smdp, terminal = line(6)
    data = sample_expert_data(smdp, 4000, 1.0, torch.Generator().manual_seed(2), terminal, noise=0.6)
    assert data.counts.sum() == 5 * 4000                               # noise changes what is shown, not how often
    assert float(data.counts[:, 0].sum()) / (5 * 4000) == pytest.approx(0.3, abs=0.02)


def test_expert_tasks_are_uniform_and_horizon_caps_trajectories(dense):
    data = sample_expert_data(dense, 2000, 1.0, torch.Generator().manual_seed(3), horizon=7)
    assert torch.equal(data.counts.sum(1), torch.full((2000,), 7))    # no terminal states: always 7 decisions
    shares = torch.bincount(data.task, minlength=len(dense)).double() / 2000
    assert torch.allclose(shares, torch.full((len(dense),), 1 / len(dense), dtype=DTYPE), atol=0.04)


@pytest.mark.parametrize("kwargs, field", [({"sigma": 0.0}, "sigma"), ({"noise": 1.0}, "noise"),
                                           ({"horizon": 0}, "horizon"), ({"n_samples": 0}, "n_samples")])
def test_expert_sampling_rejects_bad_inputs(dense, kwargs, field):
    arguments = {"n_samples": 3, "sigma": 0.5} | kwargs
    with pytest.raises(ConfigError, match=f"^{field} = "):
        sample_expert_data(dense, generator=torch.Generator(), **arguments)


def test_samples_to_eps_needs_fewer_samples_as_sigma_grows(dense):
    sizes = [1, 2, 4, 8, 16, 32, 64, 128]
    results = {sigma: samples_to_eps(dense, 0.02, 0.2, sigma, sizes, 40, generator=torch.Generator().manual_seed(4))
               for sigma in (0.05, 0.25, 1.0)}
    required = [results[sigma]["n_required"] for sigma in (0.05, 0.25, 1.0)]
    assert None not in required and required[0] > required[1] >= required[2]
    for result in results.values():
        errors = result["mean_error"]                                  # prefixes only grow Z_hat
        assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(errors))
        assert result["n_distinct_masks"] <= 2 ** dense.n_options
        first = sizes.index(result["n_required"])
        assert result["success"][first] >= 0.8 and all(p < 0.8 for p in result["success"][:first])


def test_samples_to_eps_passes_rule_arguments(dense):
    result = samples_to_eps(dense, 0.0, 0.5, 1.0, [50], 5, rule="top_k", k=1, generator=torch.Generator().manual_seed(5))
    assert result["mean_size"] == [1.0]


@pytest.mark.parametrize("kwargs, field", [
    ({"eps": -1.0}, "eps"), ({"delta": 1.0}, "delta"), ({"sigma": 1.5}, "sigma"), ({"trials": 0}, "trials"),
    ({"sample_sizes": [4, 2]}, "sample_sizes"), ({"sample_sizes": []}, "sample_sizes"),
    ({"rule": "all"}, "rule"), ({"rule": "top_k"}, "k"), ({"thresh": 0.1}, "rule_kwargs"),
])
def test_samples_to_eps_rejects_bad_inputs_before_work(dense, kwargs, field):
    arguments = {"eps": 0.1, "delta": 0.1, "sigma": 0.5, "sample_sizes": [1, 2], "trials": 2} | kwargs
    with pytest.raises(ConfigError, match=f"^{field} = "):
        samples_to_eps(dense, **arguments)


def test_rows_that_kept_nothing_fall_back_to_the_full_set_and_are_flagged():
    counts = torch.tensor([[0, 0, 0], [2, 0, 1], [0, 0, 0]])
    masks, empty = full_where_empty(prune(counts, "observed"))
    assert empty.tolist() == [True, False, True]
    assert masks.tolist() == [[True, True, True], [True, False, True], [True, True, True]]
