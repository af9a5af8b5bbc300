"""Task families and their gymnasium view: option models match rollouts, the chain shows the horizon,
bad input is refused with a ConfigError naming the field, seeds reproduce."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hydra.utils import instantiate
from omegaconf import OmegaConf

import ra3lab.envs
from ra3lab.envs import ENV_ID, FAMILIES
from ra3lab.envs.chain import chain
from ra3lab.envs.option_env import OptionMDPEnv
from ra3lab.envs.random_dense import random_dense
from ra3lab.envs.star import star
from ra3lab.errors import ConfigError
from ra3lab.mdp.planning import bellman_q, greedy_values, optimal_values, policy_evaluation

ENVS_DIR = Path(__file__).resolve().parent.parent / "envs"


def rollout_option(family, task: int, state: int, z: int, n: int, seed: int = 0):
    """(n,) discounted rewards and (n, S) end-state indicators weighted by the returned discount."""
    env = OptionMDPEnv(family)
    env.reset(seed=seed)
    rewards, weights = np.zeros(n), np.zeros((n, env.observation_space.n))
    for i in range(n):
        env.reset(options={"task": task, "state": state})
        end, rewards[i], _, _, info = env.step(z)
        weights[i, end] = info["discount"]
    return rewards, weights


@pytest.mark.parametrize("family, task, state, z", [
    (chain(n_tasks=1, n_states=10, slip=0.3, gamma=0.9, taus=(3,)), 0, 6, 1),
    (chain(n_tasks=4, n_states=7, slip=0.2, gamma=0.9, taus=(2, 3), n_distractors=2, goal="random", seed=1), 2, 3, 4),
    (star(n_tasks=2, corridor_length=3, slip=0.2, gamma=0.9), 0, 0, None),
    (star(n_tasks=2, corridor_length=3, slip=0.2, gamma=0.9), 1, 2, 9),
    (random_dense(n_tasks=2, n_states=5, n_actions=3, n_options=3, tau_min=1, tau_max=4, gamma=0.8), 1, 2, 1),
])
def test_option_models_match_rollouts(family, task, state, z):
    if z is None:                                            # the option of the task's goal corridor
        z = int(family.meta["goal"][task]) // 3 - 1
    n = 4000
    rewards, weights = rollout_option(family, task, state, z, n)
    model_reward = family.abstract.rewards[task, z, state].item()
    model_weights = family.abstract.transitions[task, z, state].numpy()
    assert abs(rewards.mean() - model_reward) <= 4.5 * rewards.std() / math.sqrt(n) + 1e-12
    # weights lie in [0, 1], so the standard error of a column's mean is at most sqrt(mean / n)
    free = ~family.meta["terminal"][task].numpy()
    error = np.abs(weights.mean(0) - model_weights)[free]
    assert np.all(error <= 4.5 * np.sqrt(model_weights[free] / n) + 1e-12), error
    # an option stops on entering a terminal state, so gamma^steps >= gamma^tau there
    assert np.all(weights.mean(0)[~free] >= model_weights[~free] - 4.5 * np.sqrt(model_weights[~free] / n))


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("granularity", ["abstract", "primitive"])
def test_check_env(name, granularity, recwarn):
    env = gym.make(ENV_ID, family=name, family_kwargs={"n_tasks": 3}, granularity=granularity, max_decisions=20)
    check_env(env.unwrapped)
    assert not [str(w.message) for w in recwarn]
    family = env.unwrapped.family
    expected = len(family.options) if granularity == "abstract" else family.mdps.n_actions
    assert env.action_space.n == expected and env.observation_space.n == family.mdps.n_states


def test_episode_fixes_task_and_truncates():
    env = OptionMDPEnv("star", {"n_tasks": 4, "n_distractors": 2}, max_decisions=3)
    state, info = env.reset(seed=0, options={"task": 2})
    assert (state, info["task"]) == (0, 2)
    distractor = env.action_space.n - 1                      # never reaches a goal
    outcomes = [env.step(distractor)[2:4] for _ in range(3)]
    assert outcomes == [(False, False), (False, False), (False, True)]
    goal_corridor = int(env.family.meta["goal"][2]) // 4 - 1
    env.reset(options={"task": 2})
    _, reward, terminated, _, info = env.step(goal_corridor)
    assert terminated and info["tau"] == 4 and reward == pytest.approx(0.95**3)


def sweeps_to_eps_optimal(family, eps: float = 1e-3) -> int:
    """Bellman sweeps from V = 0 until the greedy policy of the latest sweep is eps-optimal in every state."""
    smdp, terminal = family.abstract, family.meta["terminal"]
    best = optimal_values(smdp)
    values = torch.zeros_like(best)
    for sweep in range(1, 1000):
        values, policy = greedy_values(bellman_q(smdp, values))
        if (best - policy_evaluation(smdp, policy, terminal)).max() <= eps:
            return sweep
    raise AssertionError("no eps-optimal policy within 1000 sweeps")


def test_chain_horizon_shrinks_with_tau():
    """DESIGN.md: a 40-state chain needs 39, 20, 10, 5 sweeps for tau = 1, 2, 4, 8 (bounds 1141, 539, 257, 123)."""
    families = [chain(n_tasks=1, n_states=40, slip=0.1, gamma=0.99, taus=tau) for tau in (1, 2, 4, 8)]
    assert [sweeps_to_eps_optimal(f) for f in families] == [39, 20, 10, 5]
    bounds = []
    for family in families:                                  # Theorem 3.6 with R_max and gamma_bar = gamma^tau
        gamma_bar, r_max = family.abstract.gamma_bar().item(), family.abstract.reward_bound().item()
        bounds.append(math.ceil(math.log(r_max / (1e-3 * (1 - gamma_bar))) / (1 - gamma_bar)))
    assert bounds == [1141, 539, 257, 123]


@pytest.mark.parametrize("build, field", [
    (lambda: chain(gamma=1.0), "gamma"),
    (lambda: chain(gamma=0.0), "gamma"),
    (lambda: star(gamma=1.5), "gamma"),
    (lambda: chain(slip=1.0), "slip"),
    (lambda: chain(slip=-0.1), "slip"),
    (lambda: star(slip=1.0), "slip"),
    (lambda: chain(taus=0), "taus"),
    (lambda: chain(taus=(2, 0)), "taus"),
    (lambda: chain(n_states=1), "n_states"),
    (lambda: chain(goal="left"), "goal"),
    (lambda: star(n_goal_corridors=9, n_corridors=8), "n_goal_corridors"),
    (lambda: star(n_goal_corridors=0), "n_goal_corridors"),
    (lambda: star(corridor_length=0), "corridor_length"),
    (lambda: OptionMDPEnv("grid"), "family"),
    (lambda: OptionMDPEnv("chain", granularity="tokens"), "granularity"),
    (lambda: OptionMDPEnv("chain", max_decisions=0), "max_decisions"),
])
def test_bad_input_names_the_field(build, field):
    with pytest.raises(ConfigError) as error:
        build()
    assert error.value.field == field and str(error.value).startswith(f"{field} = ")


def test_n_goal_corridors_message_names_the_range():
    with pytest.raises(ConfigError,
                       match=r"n_goal_corridors = 5 is invalid: must lie in \[1, n_corridors\] = \[1, 4\]"):
        star(n_corridors=4, n_goal_corridors=5)


@pytest.mark.parametrize("build", [
    lambda seed: chain(n_tasks=16, goal="random", n_distractors=6, seed=seed),
    lambda seed: star(n_tasks=16, seed=seed),
])
def test_seeds_reproduce(build):
    first, again, other = build(0), build(0), build(1)
    assert torch.equal(first.mdps.transitions, again.mdps.transitions)
    assert torch.equal(first.mdps.rewards, again.mdps.rewards) and torch.equal(first.mdps.start, again.mdps.start)
    assert torch.equal(first.options.actions, again.options.actions) and first.options.names == again.options.names
    assert not torch.equal(first.meta["goal"], other.meta["goal"])
    assert first.options.names != other.options.names      # distractors differ


def test_star_goal_corridors_are_z_eps():
    family = star(n_tasks=16, n_corridors=6, n_goal_corridors=3, n_distractors=5)
    smdp, needed = family.abstract, family.meta["needed_options"]
    assert len(family.options) == 11 and needed == [0, 1, 2]
    keep = torch.zeros(len(family.options), dtype=torch.bool)
    keep[needed] = True
    start = torch.zeros(16, dtype=torch.long)
    full, pruned = (optimal_values(smdp, mask)[torch.arange(16), start] for mask in (None, keep))
    torch.testing.assert_close(pruned, full)
    keep[needed[-1]] = False                                 # dropping a goal corridor costs value
    assert optimal_values(smdp, keep)[:, 0].min() == 0.0


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_yaml_configs_instantiate_the_defaults(name):
    config = OmegaConf.load(ENVS_DIR / f"{name}.yaml")
    family = instantiate(config)
    default = FAMILIES[name]()
    assert family.name == name and torch.equal(family.mdps.transitions, default.mdps.transitions)
    assert family.options.names == default.options.names


def test_registration_happens_on_import():
    assert ra3lab.envs.ENV_ID in gym.registry
