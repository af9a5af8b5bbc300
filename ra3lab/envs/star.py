"""Star mazes: a hub with corridors, goals at the far end of a few of them, and distractor options.

The instance of Theorem 3.5: |Z| = n_corridors + n_distractors while Z_eps is the set of
goal-corridor options (|Z_eps| = n_goal_corridors), so the two sizes vary independently.
State 0 is the hub; position i = 1..L of corridor k = 1..K is state (k - 1) L + i, its far end k L.
"""

from __future__ import annotations

import torch

from ra3lab.envs.family import OptionFamily
from ra3lab.errors import check
from ra3lab.mdp.smdp import DTYPE, MDPBatch, Options


def star_transitions(n_corridors: int, corridor_length: int, slip: float) -> torch.Tensor:
    """(K + 1, S, S) moves without a goal: action 0 = back, k = forward along corridor k.

    Forward k enters corridor k from the hub and moves on inside it (a far end stays put); inside
    another corridor it stays put. Back leaves a corridor cell toward the hub (the hub stays put).
    With probability ``slip`` any move fails and the state stays.
    """
    K, L = n_corridors, corridor_length
    S = 1 + K * L
    target = torch.arange(S).repeat(K + 1, 1)                 # (A, S) intended next state; default: stay
    cells = torch.arange(1, S)
    position = (cells - 1) % L + 1
    corridor = (cells - 1) // L + 1
    target[0, cells] = torch.where(position == 1, 0, cells - 1)
    target[corridor, cells] = torch.where(position < L, cells + 1, cells)
    target[1:, 0] = (torch.arange(K) * L + 1)
    transitions = (1.0 - slip) * torch.nn.functional.one_hot(target, S).to(DTYPE)
    transitions += slip * torch.eye(S, dtype=DTYPE)
    return transitions


def star_options(n_corridors: int, corridor_length: int, n_distractors: int, generator: torch.Generator) -> Options:
    """"corridor k" = forward k, L times; distractors = back, forward j, back, forward j', ... (random j)."""
    L = corridor_length
    sequences = [[k] * L for k in range(1, n_corridors + 1)]
    names = [f"corridor{k}" for k in range(1, n_corridors + 1)]
    for d in range(n_distractors):
        forwards = torch.randint(1, n_corridors + 1, (L,), generator=generator).tolist()
        sequences.append([0 if i % 2 == 0 else forwards[i] for i in range(L)])
        names.append(f"distractor{d}:" + ",".join(map(str, sequences[-1])))
    length_probs = [[0.0] * (L - 1) + [1.0]] * len(sequences)
    return Options.from_sequences(sequences, length_probs, names)


def star(
    n_tasks: int = 32,
    n_corridors: int = 8,
    corridor_length: int = 4,
    n_goal_corridors: int = 4,
    n_distractors: int = 8,
    slip: float = 0.0,
    gamma: float = 0.95,
    seed: int = 0,
) -> OptionFamily:
    """``n_tasks`` star mazes; start at the hub, reward 1 on entering the (absorbing) goal.

    n_tasks: tasks B drawn from p(M).
    n_corridors: corridors K around the hub (one "corridor k" option each), >= 1.
    corridor_length: cells L per corridor = the length tau of every option, >= 1.
    n_goal_corridors: the goal is the far end of one of the first n_goal_corridors corridors; goals are
        balanced across tasks (each corridor is the goal of n_tasks / n_goal_corridors tasks, up to
        one) and shuffled, so p(M) is uniform over the goal corridors without sampling noise.
    n_distractors: options that start with "back" and alternate back/forward, so never reach a new far end.
    slip: probability that a primitive move fails (the state stays), in [0, 1).
    gamma: discount per primitive step, in (0, 1).
    seed: seeds goals and distractors.

    meta: "terminal" (B, S) bool; "goal" (B,) long; "needed_options": indices of the goal-corridor
    options (Z_eps under p(M)); "action_names".
    """
    check(n_tasks >= 1, "n_tasks", n_tasks, "need at least 1 task")
    check(n_corridors >= 1, "n_corridors", n_corridors, "need at least 1 corridor")
    check(corridor_length >= 1, "corridor_length", corridor_length, "need at least 1 cell per corridor")
    check(1 <= n_goal_corridors <= n_corridors, "n_goal_corridors", n_goal_corridors,
          f"must lie in [1, n_corridors] = [1, {n_corridors}]")
    check(n_distractors >= 0, "n_distractors", n_distractors, "must be >= 0")
    check(0.0 <= slip < 1.0, "slip", slip, "must lie in [0, 1)")
    check(0.0 < gamma < 1.0, "gamma", gamma, "must lie in the open interval (0, 1)")
    generator = torch.Generator().manual_seed(seed)
    S = 1 + n_corridors * corridor_length
    goals = (torch.randperm(n_tasks, generator=generator) % n_goal_corridors + 1) * corridor_length
    tasks = torch.arange(n_tasks)
    terminal = torch.zeros(n_tasks, S, dtype=torch.bool)
    terminal[tasks, goals] = True
    transitions = star_transitions(n_corridors, corridor_length, slip).expand(n_tasks, -1, S, S).clone()
    transitions[tasks, :, goals] = torch.nn.functional.one_hot(goals, S).to(DTYPE).unsqueeze(1)
    rewards = transitions[tasks, :, :, goals].masked_fill(terminal.unsqueeze(1), 0.0)
    mdps = MDPBatch(transitions, rewards, torch.zeros(n_tasks, dtype=torch.long), gamma)
    options = star_options(n_corridors, corridor_length, n_distractors, generator)
    action_names = ("back",) + tuple(f"forward{k}" for k in range(1, n_corridors + 1))
    meta = {"terminal": terminal, "goal": goals, "needed_options": list(range(n_goal_corridors)),
            "action_names": action_names}
    return OptionFamily("star", mdps, options, meta)
