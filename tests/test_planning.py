"""Planning on SMDPs against independent references: mdptoolbox-hiive and exact linear algebra."""

import numpy as np
import pytest
import torch
from hiive.mdptoolbox.mdp import PolicyIteration, ValueIteration

from ra3lab.cli import main
from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import ConfigError
from ra3lab.mdp import planning
from ra3lab.mdp.planning import bellman_q, optimal_values, policy_evaluation, value_iteration
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


def test_blocks_and_masks_do_not_change_the_iterates(family, monkeypatch):
    smdp = family.abstract
    allowed = torch.rand(len(smdp), smdp.n_options, generator=torch.Generator().manual_seed(0)) < 0.6
    allowed[:, 0] = True
    whole = value_iteration(smdp, allowed=allowed)
    monkeypatch.setattr(planning, "BLOCK_BYTES", 1)                   # one MDP per block
    blocked = value_iteration(smdp, allowed=allowed)
    # the same iterates up to the summation order of the batched product
    assert torch.allclose(whole.values, blocked.values, rtol=0, atol=1e-12)
    assert torch.equal(whole.iterations, blocked.iterations)
    from_zero = value_iteration(smdp, allowed=allowed, initial=torch.zeros(len(smdp), smdp.n_states, dtype=torch.float64))
    assert torch.allclose(whole.values, from_zero.values, rtol=0, atol=1e-12)  # the product-free first sweep
    assert torch.equal(whole.iterations, from_zero.iterations)
    assert (whole.q[~allowed.unsqueeze(-1).expand_as(whole.q)] == float("-inf")).all()


def test_an_smdp_with_no_decision_anywhere_has_zero_value(family):
    smdp = family.abstract
    none = torch.zeros(smdp.n_options, dtype=torch.bool)
    assert torch.equal(value_iteration(smdp, allowed=none).values, torch.zeros(len(smdp), smdp.n_states, dtype=torch.float64))


@pytest.mark.parametrize("kwargs, field", [({"tol": 0.0}, "tol"), ({"max_iter": 0}, "max_iter"), ({"stop": "l2"}, "stop")])
def test_bad_arguments_name_the_field(family, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        value_iteration(family.abstract, **kwargs)


def test_bench_command_takes_parameters(capsys):
    assert main(["bench", "mdp", "n_mdps=8", "n_states=6", "n_options=3", "repeats=1", "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["bench"] == "mdp" and summary["iterations_agree"] and summary["max_abs_value_diff"] <= 1e-6
    assert main(["bench", "mdp", "n_mpds=8", "--json"]) == 2
