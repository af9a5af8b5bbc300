"""Goal-reaching chains: sparse reward that must travel the whole chain, options that jump tau cells.

The instance of Theorem 3.6: value iteration needs about (distance to goal) / tau sweeps before
its greedy policy is eps-optimal, so "repeat left/right tau times" options shorten the horizon.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ra3lab.envs.family import OptionFamily
from ra3lab.errors import check, check_choice
from ra3lab.mdp.smdp import DTYPE, MDPBatch, Options

GOALS = ("right", "random")
ACTION_NAMES = ("left", "right")


def chain_transitions(n_states: int, slip: float) -> torch.Tensor:
    """(2, S, S) moves without a goal: action 0 = left, 1 = right; w.p. ``slip`` the other way (walls stop)."""
    states = torch.arange(n_states)
    left, right = (states - 1).clamp(min=0), (states + 1).clamp(max=n_states - 1)
    transitions = torch.zeros(2, n_states, n_states, dtype=DTYPE)
    for action, (intended, other) in enumerate(((left, right), (right, left))):
        transitions[action, states, intended] += 1.0 - slip
        transitions[action, states, other] += slip
    return transitions


def chain_options(taus: tuple[int, ...], n_distractors: int, generator: torch.Generator) -> Options:
    """"repeat left/right tau times" per tau, then distractors: alternating left/right of a random tau."""
    sequences, names = [], []
    for tau in taus:
        for action, name in enumerate(ACTION_NAMES):
            sequences.append([action] * tau)
            names.append(f"{name}x{tau}")
    for d in range(n_distractors):
        tau = taus[int(torch.randint(len(taus), (1,), generator=generator))]
        first = int(torch.randint(2, (1,), generator=generator))
        sequences.append([(first + k) % 2 for k in range(tau)])
        names.append(f"distractor{d}:" + "".join("LR"[a] for a in sequences[-1]))
    length_probs = [[0.0] * (len(seq) - 1) + [1.0] for seq in sequences]
    return Options.from_sequences(sequences, length_probs, names)


def chain(
    n_tasks: int = 8,
    n_states: int = 40,
    slip: float = 0.1,
    gamma: float = 0.99,
    taus: int | Sequence[int] = (1, 2, 4, 8),
    n_distractors: int = 0,
    goal: str = "right",
    seed: int = 0,
) -> OptionFamily:
    """``n_tasks`` chains of ``n_states`` cells; reward 1 on entering the (absorbing) goal.

    n_tasks: tasks B drawn from p(M) (all equal when goal="right").
    n_states: cells S of the chain, >= 2.
    slip: probability that a move goes the opposite way, in [0, 1).
    gamma: discount per primitive step, in (0, 1).
    taus: option length(s); Z holds "repeat left tau times" and "repeat right tau times" for each.
    n_distractors: extra options alternating left/right (random first move and tau), >= 0.
    goal: "right" = goal S-1 for every task; "random" = goal uniform per task. Start = the farther end.
    seed: seeds goals and distractors.

    meta: "terminal" (B, S) bool, the goal; "goal" (B,) long; "action_names".
    """
    taus = (taus,) if isinstance(taus, int) else tuple(taus)
    check(n_tasks >= 1, "n_tasks", n_tasks, "need at least 1 task")
    check(n_states >= 2, "n_states", n_states, "need at least 2 states")
    check(0.0 <= slip < 1.0, "slip", slip, "must lie in [0, 1)")
    check(0.0 < gamma < 1.0, "gamma", gamma, "must lie in the open interval (0, 1)")
    check(len(taus) >= 1 and all(isinstance(t, int) and t >= 1 for t in taus), "taus", taus,
          "need one or more integers >= 1 (an option lasts at least one step)")
    check(len(set(taus)) == len(taus), "taus", taus, "must not repeat a length")
    check(n_distractors >= 0, "n_distractors", n_distractors, "must be >= 0")
    check_choice("goal", goal, GOALS)
    generator = torch.Generator().manual_seed(seed)
    if goal == "right":
        goals = torch.full((n_tasks,), n_states - 1, dtype=torch.long)
    else:
        goals = torch.randint(n_states, (n_tasks,), generator=generator)
    start = torch.where(goals >= n_states - 1 - goals, 0, n_states - 1)
    tasks = torch.arange(n_tasks)
    terminal = torch.zeros(n_tasks, n_states, dtype=torch.bool)
    terminal[tasks, goals] = True
    transitions = chain_transitions(n_states, slip).expand(n_tasks, 2, n_states, n_states).clone()
    transitions[tasks, :, goals] = torch.nn.functional.one_hot(goals, n_states).to(DTYPE).unsqueeze(1)
    rewards = transitions[tasks, :, :, goals].masked_fill(terminal.unsqueeze(1), 0.0)
    mdps = MDPBatch(transitions, rewards, start, gamma)
    options = chain_options(taus, n_distractors, generator)
    return OptionFamily("chain", mdps, options, {"terminal": terminal, "goal": goals, "action_names": ACTION_NAMES})
