"""Planning on SMDPs against independent references: mdptoolbox-hiive and exact linear algebra."""

import numpy as np
import pytest
import torch
from hiive.mdptoolbox.mdp import PolicyIteration, ValueIteration

from ra3lab.cli import main
from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import ConfigError
from ra3lab.mdp import planning
from ra3lab.mdp.planning import (
    bellman_q,
    greedy_values,
    optimal_values,
    policy_evaluation,
    value_iteration,
)
from ra3lab.mdp.smdp import SMDP


@pytest.fixture(scope="module")
def family():
    return random_dense(n_tasks=6, n_states=9, n_actions=3, n_options=5, tau_min=1, tau_max=3, gamma=0.9, seed=3)


def peer_inputs(smdp: SMDP, b: int):
    """The SMDP as hiive's MDP: P = discounted models / gamma (sub-stochastic), R (S, Z)."""
    return np.ascontiguousarray((smdp.transitions[b] / smdp.gamma).numpy()), smdp.rewards[b].T.numpy().copy()


def test_optimal_values_match_hiive_policy_iteration(family):
    smdp = family.abstract
    ours = optimal_values(smdp)
    for b in range(len(smdp)):
        peer = PolicyIteration(*peer_inputs(smdp, b), smdp.gamma, skip_check=True)
        peer.run()
        assert np.abs(ours[b].numpy() - np.array(peer.V)).max() < 1e-9


def test_span_rule_takes_hiive_value_iteration_iterates(family):
    smdp = family.abstract
    ours = value_iteration(smdp, tol=1e-4, stop="span")
    for b in range(len(smdp)):
        peer = ValueIteration(*peer_inputs(smdp, b), smdp.gamma, epsilon=1e-4, skip_check=True)
        peer.max_iter = 10_000
        peer.run()
        assert int(ours.iterations[b]) == peer.iter
        assert np.abs(ours.values[b].numpy() - np.array(peer.V)).max() < 1e-12


def test_sup_rule_is_within_tolerance_of_v_star_and_its_policy_optimal(family):
    smdp, tol = family.abstract, 1e-6
    v_star = optimal_values(smdp)
    result = value_iteration(smdp, tol=tol)
    assert result.converged.all()
    assert (result.values - v_star).abs().max() <= tol / 2
    assert (v_star - policy_evaluation(smdp, result.policy)).max() <= tol
    q_star = bellman_q(smdp, v_star)                                   # Q* is consistent with V*
    assert torch.allclose(q_star.amax(1), v_star, atol=1e-9)


@pytest.fixture(scope="module")
def mixed(family):
    """The family's SMDPs with rewards scaled 1e-3 .. 1e3: under either rule they stop at different sweeps."""
    smdp = family.abstract
    scale = torch.logspace(-3, 3, len(smdp), dtype=torch.float64).view(-1, 1, 1)
    return SMDP(smdp.transitions, smdp.rewards * scale, smdp.start, smdp.gamma)


RESULTS = ("values", "q", "policy", "iterations", "converged")


@pytest.mark.parametrize("stop", planning.STOPPING_RULES)
@pytest.mark.parametrize("masked", [False, True])
def test_threads_and_batch_order_change_no_result(mixed, stop, masked):
    """1 or 2 threads, the batch reversed, each MDP alone: the same iterates, bit for bit, although the MDPs
    stop at different sweeps."""
    draws = torch.rand(len(mixed), mixed.n_options, generator=torch.Generator().manual_seed(0))
    allowed = draws < 0.6 if masked else None
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = value_iteration(mixed, stop=stop, allowed=allowed)
    finally:
        torch.set_num_threads(threads)
    assert len(set(one_thread.iterations.tolist())) == len(mixed)
    order = torch.arange(len(mixed) - 1, -1, -1)
    reversed_batch = value_iteration(mixed.select(order), stop=stop,
                                     allowed=None if allowed is None else allowed[order])
    alone = [value_iteration(mixed.select(torch.tensor([b])), stop=stop,
                             allowed=None if allowed is None else allowed[b:b + 1]) for b in range(len(mixed))]
    for name in RESULTS:
        expected = getattr(one_thread, name)
        assert torch.equal(getattr(value_iteration(mixed, stop=stop, allowed=allowed), name), expected), name
        assert torch.equal(getattr(reversed_batch, name)[order], expected), name
        assert torch.equal(torch.cat([getattr(one, name) for one in alone]), expected), name


def test_masks_and_the_product_free_first_sweep_do_not_change_the_iterates(family):
    smdp = family.abstract
    allowed = torch.rand(len(smdp), smdp.n_options, generator=torch.Generator().manual_seed(0)) < 0.6
    allowed[:, 0] = True
    whole = value_iteration(smdp, allowed=allowed)
    zeros = torch.zeros(len(smdp), smdp.n_states, dtype=torch.float64)
    from_zero = value_iteration(smdp, allowed=allowed, initial=zeros)
    assert torch.allclose(whole.values, from_zero.values, rtol=0, atol=1e-12)  # the product-free first sweep
    assert torch.equal(whole.iterations, from_zero.iterations)
    assert (whole.q[~allowed.unsqueeze(-1).expand_as(whole.q)] == float("-inf")).all()


def test_each_mdp_keeps_the_iterate_it_stopped_at_and_max_iter_cuts_the_rest(mixed):
    """Against plain Bellman backups V_k = max_z (R_z + P_z V_{k-1}): an MDP that stopped at sweep k < 8
    keeps V_k; the ones max_iter = 8 cut get V_8, unconverged."""
    iterates = [torch.zeros(len(mixed), mixed.n_states, dtype=torch.float64)]
    for _ in range(8):
        iterates.append(greedy_values(bellman_q(mixed, iterates[-1]))[0])
    result = value_iteration(mixed, tol=1e-6, stop="span", max_iter=8)
    assert result.iterations.tolist() == [5, 6, 8, 8, 8, 8]
    assert result.converged.tolist() == [True, True, True, True, False, False]
    for b, k in enumerate(result.iterations.tolist()):
        assert torch.allclose(result.values[b], iterates[k][b], rtol=1e-14, atol=0), b
    assert torch.allclose(result.q, bellman_q(mixed, result.values), rtol=1e-14, atol=0)


def test_an_mdp_the_first_sweep_stops_keeps_it_while_the_others_sweep_on(mixed):
    rewards = mixed.rewards.clone()
    rewards[0] = 1.0                                                   # V_1 = 1 everywhere: span 0 at sweep 1
    result = value_iteration(SMDP(mixed.transitions, rewards, mixed.start, mixed.gamma), stop="span")
    assert result.iterations[0] == 1 and result.converged[0] and (result.values[0] == 1.0).all()
    assert (result.iterations[1:] > 1).all()


def test_an_smdp_with_no_decision_anywhere_has_zero_value(family):
    smdp = family.abstract
    none = torch.zeros(smdp.n_options, dtype=torch.bool)
    zeros = torch.zeros(len(smdp), smdp.n_states, dtype=torch.float64)
    assert torch.equal(value_iteration(smdp, allowed=none).values, zeros)


@pytest.mark.parametrize("kwargs, field", [({"tol": 0.0}, "tol"), ({"max_iter": 0}, "max_iter"),
                                           ({"stop": "l2"}, "stop")])
def test_bad_arguments_name_the_field(family, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        value_iteration(family.abstract, **kwargs)


def test_bench_command_takes_parameters(capsys):
    assert main(["bench", "mdp", "n_mdps=8", "n_states=6", "n_options=3", "repeats=1", "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["bench"] == "mdp" and summary["iterations_agree"] and summary["max_abs_value_diff"] <= 1e-6
    assert main(["bench", "mdp", "n_mpds=8", "--json"]) == 2
