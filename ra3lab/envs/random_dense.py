"""Random dense MDPs: Dirichlet transitions, uniform rewards, options = random action sequences.

Used where instances need no structure (Lemma 3.2's identity, the value-iteration benchmark). On
such MDPs the greedy policy is optimal after a couple of sweeps, so they carry no horizon signal.
"""

from __future__ import annotations

import torch

from ra3lab.envs.family import OptionFamily
from ra3lab.errors import check
from ra3lab.mdp.smdp import DTYPE, MDPBatch, Options


def random_options(n_options: int, n_actions: int, tau_min: int, tau_max: int, generator: torch.Generator) -> Options:
    """``n_options`` random action sequences of length ``tau_max``; tau uniform on [tau_min, tau_max]."""
    actions = torch.randint(n_actions, (n_options, tau_max), generator=generator)
    length_probs = torch.zeros(n_options, tau_max, dtype=DTYPE)
    length_probs[:, tau_min - 1:] = 1.0 / (tau_max - tau_min + 1)
    names = tuple(f"z{z}:" + "".join(map(str, row.tolist())) for z, row in enumerate(actions))
    return Options(actions, length_probs, names)


def random_dense(
    n_tasks: int = 16,
    n_states: int = 12,
    n_actions: int = 4,
    n_options: int = 8,
    tau_min: int = 1,
    tau_max: int = 3,
    gamma: float = 0.95,
    concentration: float = 1.0,
    seed: int = 0,
) -> OptionFamily:
    """``n_tasks`` MDPs with P(.|s,a) ~ Dirichlet(concentration) and rewards ~ U[0, 1); start state 0."""
    check(n_tasks >= 1, "n_tasks", n_tasks, "need at least 1 task")
    check(n_states >= 2, "n_states", n_states, "need at least 2 states")
    check(n_actions >= 1, "n_actions", n_actions, "need at least 1 action")
    check(n_options >= 1, "n_options", n_options, "need at least 1 option")
    check(tau_min >= 1, "tau_min", tau_min, "must be >= 1 (an option lasts at least one step)")
    check(tau_max >= tau_min, "tau_max", tau_max, f"must be >= tau_min ({tau_min})")
    check(concentration > 0, "concentration", concentration, "must be > 0")
    generator = torch.Generator().manual_seed(seed)
    alpha = torch.full((n_states,), float(concentration), dtype=DTYPE)
    gammas = torch._standard_gamma(alpha.expand(n_tasks, n_actions, n_states, n_states).contiguous(),
                                   generator=generator)
    transitions = gammas / gammas.sum(-1, keepdim=True)
    rewards = torch.rand(n_tasks, n_actions, n_states, dtype=DTYPE, generator=generator)
    mdps = MDPBatch(transitions, rewards, torch.zeros(n_tasks, dtype=torch.long), gamma)
    options = random_options(n_options, n_actions, tau_min, tau_max, generator)
    return OptionFamily("random_dense", mdps, options, {"terminal": torch.zeros(n_tasks, n_states, dtype=torch.bool)})
