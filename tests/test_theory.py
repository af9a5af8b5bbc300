"""Closed-form bounds (Lemma 3.2, Theorems 3.5 and 3.6)."""

import math

import numpy as np
import pytest
import torch

from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import ConfigError
from ra3lab.mdp.planning import bellman_q, optimal_values, policy_evaluation, start_values
from ra3lab.mdp.smdp import Options, option_models
from ra3lab.theory.bounds import (
    effective_horizon,
    gamma_bar_fixed,
    pruning_sample_bound,
    regret_decomposition,
    thm_3_5_samples_eps,
    thm_3_5_samples_full,
    thm_3_6_iterations,
)


def test_regret_decomposition_on_hand_values():
    parts = regret_decomposition([1.0, 2.0], [0.5, 2.0], [0.2, 1.5])
    assert parts["pruning_error"].tolist() == [0.5, 0.0]
    assert np.allclose(parts["rl_error"], [0.3, 0.5]) and np.allclose(parts["total"], [0.8, 0.5])
    assert parts["max_abs_residual"] < 1e-15
    assert parts["expected_pruning_error"] == pytest.approx(0.25)
    assert parts["expected_rl_error"] == pytest.approx(0.4) and parts["expected_total"] == pytest.approx(0.65)
    # a value of pi in M|Z_hat that disagrees with its value in M shows up as the residual
    wrong = regret_decomposition([1.0, 2.0], [0.5, 2.0], [0.2, 1.5], v_pi_restricted=[0.2, 1.6])
    assert np.allclose(wrong["residual"], [0.0, 0.1])


def test_lemma_3_2_holds_on_option_models_built_two_ways():
    family = random_dense(n_tasks=5, n_states=6, n_actions=3, n_options=5, gamma=0.9, seed=7)
    kept = torch.tensor([0, 2, 3])
    full = family.abstract
    sub = Options(family.options.actions[kept], family.options.length_probs[kept], ("a", "b", "c"))
    restricted = option_models(family.mdps, sub)
    policy = bellman_q(restricted, torch.zeros(5, 6, dtype=torch.float64)).argmax(1)   # a myopic policy in Z_hat
    parts = regret_decomposition(
        start_values(full, optimal_values(full)).numpy(),
        start_values(restricted, optimal_values(restricted)).numpy(),
        start_values(full, policy_evaluation(full, kept[policy])).numpy(),
        v_pi_restricted=start_values(restricted, policy_evaluation(restricted, policy)).numpy(),
    )
    assert parts["max_abs_residual"] < 1e-10
    assert (parts["pruning_error"] >= -1e-12).all() and (parts["rl_error"] >= -1e-12).all()
    assert parts["expected_total"] > 0


def test_theorem_3_5_sample_bounds():
    assert pruning_sample_bound(3, 10, 0.5, 0.1) == pytest.approx(3 * math.log(100) / 0.5)
    assert thm_3_5_samples_full(10, 1.0, 0.1) == pytest.approx(10 * math.log(100))
    assert thm_3_5_samples_eps(2, 10, 0.25, 0.1) == pytest.approx(2 * math.log(100) / 0.25)
    assert thm_3_5_samples_eps(0, 10, 0.25, 0.1) == 0
    sigmas = np.array([0.1, 0.2, 0.4])
    assert np.allclose(thm_3_5_samples_full(8, sigmas, 0.05) * sigmas, 8 * math.log(160))   # 1/sigma scaling


def test_theorem_3_6_iterations_reproduce_design_bounds():
    # DESIGN.md: the 40-state chain at gamma 0.99, eps 1e-3, R_max 0.9 (tau 1 and 2)
    assert math.ceil(thm_3_6_iterations(0.99, 0.9, 1e-3)) == 1141
    assert math.ceil(thm_3_6_iterations(gamma_bar_fixed(0.99, 2), 0.9, 1e-3)) == 539
    assert thm_3_6_iterations(0.5, 0.1, 1.0) == 0                       # log < 0: no sweep needed
    assert thm_3_6_iterations(0.0, math.e, 1.0) == pytest.approx(1.0)
    assert effective_horizon(0.9) == pytest.approx(10.0)
    assert gamma_bar_fixed(0.99, 4) == pytest.approx(0.99**4)
    assert np.allclose(effective_horizon(gamma_bar_fixed(0.5, np.array([1, 2]))), [2.0, 4.0 / 3.0])


@pytest.mark.parametrize("call, field", [
    (lambda: pruning_sample_bound(3, 10, 0.0, 0.1), "sigma"),
    (lambda: pruning_sample_bound(3, 10, 1.5, 0.1), "sigma"),
    (lambda: pruning_sample_bound(3, 10, 0.5, 1.0), "delta"),
    (lambda: pruning_sample_bound(11, 10, 0.5, 0.1), "k"),
    (lambda: thm_3_5_samples_full(0, 0.5, 0.1), "n_decisions"),
    (lambda: thm_3_5_samples_eps(11, 10, 0.5, 0.1), "n_eps"),
    (lambda: thm_3_6_iterations(1.0, 1.0, 0.1), "gamma_bar"),
    (lambda: thm_3_6_iterations(0.9, 1.0, 0.0), "eps"),
    (lambda: thm_3_6_iterations(0.9, 0.0, 0.1), "r_max"),
    (lambda: effective_horizon(-0.1), "gamma_bar"),
    (lambda: gamma_bar_fixed(1.0, 2), "gamma"),
    (lambda: gamma_bar_fixed(0.9, 0), "tau"),
    (lambda: regret_decomposition([1.0], [1.0, 2.0], [1.0]), "values"),
])
def test_bounds_reject_bad_inputs(call, field):
    with pytest.raises(ConfigError, match=f"^{field} = "):
        call()
