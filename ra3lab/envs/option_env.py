"""The gymnasium view of a task family: each episode is one task M ~ p(M), each action one decision.

``gym.make("ra3lab/OptionMDP-v0", family="chain", family_kwargs={...}, granularity="abstract")``.
A decision runs at primitive level by sampling, so Monte-Carlo returns estimate the exact option
models of :func:`ra3lab.mdp.smdp.option_models` (tests check this).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ra3lab.envs import FAMILIES
from ra3lab.envs.family import GRANULARITIES, OptionFamily
from ra3lab.errors import check, check_choice


class OptionMDPEnv(gym.Env):
    """Observation: the state, Discrete(S). Action: a decision, Discrete(Z) (granularity="abstract",
    the options Z) or Discrete(A) (granularity="primitive", tau = 1).

    family: a name in ``ra3lab.envs.FAMILIES`` (built with ``family_kwargs``) or an OptionFamily.
    max_decisions: decisions per episode before truncation. render_mode: None or "ansi".
    Reward of a step: the discounted reward sum_k gamma^k r_k collected inside the decision; a
    family with meta["goal"] pays 1 on entering the goal, any other pays the expected r(s, a).
    An option stops early when it enters a terminal state (meta["terminal"]), ending the episode.
    reset(options={"task": i, "state": s}) fixes the task (else uniform over the B tasks) and
    the first state (else the task's start state).
    """

    observation_space: gym.spaces.Discrete
    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 - as gym.Env declares it

    def __init__(
        self,
        family: str | OptionFamily = "chain",
        family_kwargs: dict | None = None,
        granularity: str = "abstract",
        max_decisions: int = 200,
        render_mode: str | None = None,
    ):
        check_choice("granularity", granularity, GRANULARITIES)
        check(max_decisions >= 1, "max_decisions", max_decisions, "must be >= 1")
        check(render_mode is None or render_mode in self.metadata["render_modes"], "render_mode", render_mode,
              "choose None or ansi")
        if not isinstance(family, OptionFamily):
            check_choice("family", family, tuple(FAMILIES))
            family = FAMILIES[family](**(family_kwargs or {}))
        self.family, self.render_mode, self.max_decisions = family, render_mode, max_decisions
        decisions = family.decisions(granularity)
        mdps = family.mdps
        self.gamma = mdps.gamma
        self.cumulative = np.cumsum(mdps.transitions.numpy(), -1)        # (B, A, S, S)
        self.rewards = mdps.rewards.numpy()                               # (B, A, S)
        self.start = mdps.start.numpy()                                   # (B,)
        terminal = family.meta.get("terminal")
        self.terminal = np.zeros((len(mdps), mdps.n_states), bool) if terminal is None else terminal.numpy()  # (B, S)
        self.goal = family.meta["goal"].numpy() if "goal" in family.meta else None
        self.actions = decisions.actions.numpy()                          # (Z, L)
        self.length_probs = decisions.length_probs.numpy()                # (Z, L)
        self.observation_space = gym.spaces.Discrete(mdps.n_states)
        self.action_space = gym.spaces.Discrete(len(decisions))
        self.task, self.state, self.decisions_taken = 0, int(self.start[0]), 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        check(set(options) <= {"task", "state"}, "options", options, "allowed keys: task, state")
        n_tasks, n_states = len(self.start), int(self.observation_space.n)
        self.task = int(options["task"]) if "task" in options else int(self.np_random.integers(n_tasks))
        check(0 <= self.task < n_tasks, "options.task", self.task, f"must lie in [0, {n_tasks - 1}]")
        self.state = int(options.get("state", self.start[self.task]))
        check(0 <= self.state < n_states, "options.state", self.state, f"must lie in [0, {n_states - 1}]")
        self.decisions_taken = 0
        return self.state, {"task": self.task}

    def step(self, action):
        z = int(action)
        tau = 1 + int(self.np_random.choice(self.length_probs.shape[1], p=self.length_probs[z]))
        reward, steps, terminated = 0.0, 0, bool(self.terminal[self.task, self.state])
        while steps < tau and not terminated:
            a, s = self.actions[z, steps], self.state
            row = self.cumulative[self.task, a, s]
            self.state = min(int(np.searchsorted(row, self.np_random.random() * row[-1], side="right")), len(row) - 1)
            r = float(self.state == self.goal[self.task]) if self.goal is not None else self.rewards[self.task, a, s]
            reward += self.gamma**steps * r
            steps += 1
            terminated = bool(self.terminal[self.task, self.state])
        self.decisions_taken += 1
        truncated = not terminated and self.decisions_taken >= self.max_decisions
        info = {"tau": steps, "discount": self.gamma**steps, "task": self.task}
        return self.state, float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi":
            return f"task {self.task} state {self.state} after {self.decisions_taken} decisions\n"
        return None
