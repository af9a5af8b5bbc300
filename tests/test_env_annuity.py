"""The annuity family: exact option models, gamma decides which reward is optimal, value iteration needs
more sweeps at a longer effective horizon (where the chain does not), bad input names its field."""

from __future__ import annotations

import pytest
import torch

from ra3lab.envs.annuity import annuity
from ra3lab.envs.chain import chain
from ra3lab.envs.option_env import OptionMDPEnv
from ra3lab.errors import ConfigError
from ra3lab.mdp.horizon import vi_sweeps_to_eps
from ra3lab.mdp.planning import optimal_values, value_iteration

LEFT, RIGHT = 0, 1


@pytest.mark.parametrize("tau", [1, 3])
def test_each_option_in_the_annuity_collects_one_minus_gamma_bar_and_the_annuity_is_worth_one(tau):
    smdp = annuity(n_states=10, near=4, gamma=0.9, taus=[tau]).abstract
    last = 9
    torch.testing.assert_close(smdp.rewards[0, :, last], torch.full((2,), 1 - 0.9**tau, dtype=torch.float64))
    torch.testing.assert_close(smdp.transitions[0, :, last, last], torch.full((2,), 0.9**tau, dtype=torch.float64))
    values = optimal_values(smdp)[0]
    assert values[last].item() == pytest.approx(1.0)
    assert values[0].item() == pytest.approx(0.0, abs=1e-12)  # exit: the end


@pytest.mark.parametrize("gamma, choice, value", [
    (0.7, LEFT, 0.5 * 0.7**3),     # the lump, entered on the 4th step: gamma^3 lump > gamma^7
    (0.95, RIGHT, 0.95**7),        # the annuity, entered on the 7th step, then worth 1
])
def test_gamma_decides_which_reward_is_optimal(gamma, choice, value):
    """Without slip, from 4 cells off the exit and 7 off the annuity: the annuity wins iff gamma^3 > lump."""
    family = annuity(n_states=12, near=4, lump=0.5, slip=0.0, gamma=gamma, taus=[1])
    solved = value_iteration(family.abstract, tol=1e-12)
    assert solved.policy[0, 4].item() == choice
    assert optimal_values(family.abstract)[0, 4].item() == pytest.approx(value)


def policy_sweeps(family) -> float:
    return float(vi_sweeps_to_eps(family.abstract, 1e-3)["policy_sweeps"].max())


@pytest.mark.parametrize("kwargs", [
    {"n_states": 20, "near": 7, "lump": 0.5, "slip": 0.1},
    {"n_states": 30, "near": 5, "lump": 0.3, "slip": 0.0},
    {"n_states": 16, "near": 8, "lump": 0.8, "slip": 0.2},
])
@pytest.mark.parametrize("tau", [1, 4])
def test_value_iteration_needs_more_sweeps_at_a_longer_horizon_where_the_chain_does_not(kwargs, tau):
    gammas = (0.9, 0.95, 0.99)
    sweeps = [policy_sweeps(annuity(gamma=gamma, taus=[tau], **kwargs)) for gamma in gammas]
    assert sweeps == sorted(sweeps) and sweeps[-1] > 1.5 * sweeps[0]
    chain_sweeps = [policy_sweeps(chain(n_tasks=1, n_states=kwargs["n_states"], gamma=gamma, taus=[tau]))
                    for gamma in gammas]
    assert len(set(chain_sweeps)) == 1                      # the goal's value arrives whatever gamma is


def test_episodes_pay_the_lump_once_and_the_annuity_every_step():
    family = annuity(n_states=8, near=2, lump=0.5, slip=0.0, gamma=0.9, taus=[3])
    env = OptionMDPEnv(family, max_decisions=50)
    env.reset(options={"state": 2})
    state, reward, terminated, _, info = env.step(LEFT)       # two steps to the exit: the option stops there
    assert (state, terminated, info["tau"]) == (0, True, 2) and reward == pytest.approx(0.9 * 0.5)
    env.reset(options={"state": 7})
    state, reward, terminated, _, info = env.step(RIGHT)
    assert (state, terminated, info["tau"]) == (7, False, 3) and reward == pytest.approx(1 - 0.9**3)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_states": 2}, "n_states"),
    ({"near": 0}, "near"),
    ({"n_states": 10, "near": 9}, "near"),
    ({"lump": 0.0}, "lump"),
    ({"lump": 1.0}, "lump"),
    ({"slip": 1.0}, "slip"),
    ({"gamma": 1.0}, "gamma"),
    ({"taus": (2, 0)}, "taus"),
    ({"taus": (2, 2)}, "taus"),
    ({"n_tasks": 0}, "n_tasks"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as error:
        annuity(**kwargs)
    assert error.value.field == field
