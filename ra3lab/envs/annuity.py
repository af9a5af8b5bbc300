"""Lump sum or annuity: a near one-shot reward against a distant reward stream, on a slippery line.

The instance of Theorem 3.6 where gamma matters. Cell 0 is an exit that pays ``lump`` once and
ends the episode; cell S-1 is an annuity that pays ``1 - gamma`` on every primitive step forever,
so entering it is worth sum_k gamma^k (1 - gamma) = 1 whatever gamma is, but that worth is spread
over the effective horizon 1/(1 - gamma). The start lies ``near`` cells from the exit and S-1-near
from the annuity. Without slip the annuity is optimal from the start iff gamma^(S-1-2 near) > lump,
so which reward is optimal depends on gamma; and value iteration from V = 0 sees the annuity's
worth only as 1 - gamma_bar^k after k sweeps inside it, so its greedy policy keeps the lump until
about log(1 / (1 - lump ratio)) / (1 - gamma_bar) sweeps more than the distance takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ra3lab.envs.chain import ACTION_NAMES, chain_options, chain_transitions
from ra3lab.envs.family import OptionFamily
from ra3lab.errors import check
from ra3lab.mdp.smdp import DTYPE, MDPBatch


def annuity(
    n_tasks: int = 1,
    n_states: int = 40,
    near: int = 17,
    lump: float = 0.5,
    slip: float = 0.1,
    gamma: float = 0.99,
    taus: int | Sequence[int] = (1, 2, 4, 8),
) -> OptionFamily:
    """``n_tasks`` equal lines of ``n_states`` cells: the exit (cell 0) pays ``lump`` once, the annuity
    (cell S-1, absorbing) pays ``1 - gamma`` per primitive step; start at cell ``near``.

    n_tasks: tasks B (all equal).
    n_states: cells S of the line, >= 3.
    near: cells from the start to the exit, in [1, S-2]; the annuity lies S-1-near cells away.
    lump: the exit's one-shot reward, in (0, 1): the annuity is worth 1 on entering it.
    slip: probability that a move goes the opposite way, in [0, 1).
    gamma: discount per primitive step, in (0, 1).
    taus: option lengths; Z holds "repeat left tau times" and "repeat right tau times" for each.

    meta: "terminal" (B, S) bool, the exit; "action_names".
    """
    taus = (taus,) if isinstance(taus, int) else tuple(taus)
    check(n_tasks >= 1, "n_tasks", n_tasks, "need at least 1 task")
    check(n_states >= 3, "n_states", n_states, "need at least 3 cells: exit, start, annuity")
    check(1 <= near <= n_states - 2, "near", near, f"must lie in [1, n_states - 2] = [1, {n_states - 2}]")
    check(0.0 < lump < 1.0, "lump", lump, "must lie in (0, 1): the annuity is worth 1")
    check(0.0 <= slip < 1.0, "slip", slip, "must lie in [0, 1)")
    check(0.0 < gamma < 1.0, "gamma", gamma, "must lie in the open interval (0, 1)")
    check(len(taus) >= 1 and all(isinstance(t, int) and t >= 1 for t in taus), "taus", taus,
          "need one or more integers >= 1 (an option lasts at least one step)")
    check(len(set(taus)) == len(taus), "taus", taus, "must not repeat a length")
    S = n_states
    transitions = chain_transitions(S, slip)
    transitions[:, [0, S - 1]] = torch.eye(S, dtype=DTYPE)[[0, S - 1]]       # exit and annuity absorb
    rewards = lump * transitions[:, :, 0]                                     # (A, S): entering the exit
    rewards[:, 0] = 0.0
    rewards[:, S - 1] = 1.0 - gamma
    terminal = torch.zeros(n_tasks, S, dtype=torch.bool)
    terminal[:, 0] = True
    mdps = MDPBatch(transitions.expand(n_tasks, -1, -1, -1).clone(), rewards.expand(n_tasks, -1, -1).clone(),
                    torch.full((n_tasks,), near, dtype=torch.long), gamma)
    options = chain_options(taus, 0, torch.Generator())
    return OptionFamily("annuity", mdps, options, {"terminal": terminal, "action_names": ACTION_NAMES})
