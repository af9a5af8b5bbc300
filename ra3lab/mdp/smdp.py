"""Batched tabular MDPs, open-loop options over them, and the option models that turn them into SMDPs.

Shapes: ``B`` MDPs (tasks drawn from p(M)) share ``S`` states and ``A`` primitive actions; a
decision set of ``Z`` options is shared by all of them. Everything is float64 so that exact
identities (Lemma 3.2) hold to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ra3lab.errors import check

DTYPE = torch.float64


@dataclass(frozen=True)
class MDPBatch:
    """``B`` MDPs over the same states and primitive actions.

    transitions: (B, A, S, S), ``transitions[b, a, s, s']`` = P(s' | s, a); rows sum to 1.
    rewards: (B, A, S), expected immediate reward of action ``a`` in state ``s``.
    start: (B,) long, the start state s0 of each MDP.
    gamma: discount per primitive step, in (0, 1).
    """

    transitions: torch.Tensor
    rewards: torch.Tensor
    start: torch.Tensor
    gamma: float

    def __post_init__(self):
        check(0.0 < self.gamma < 1.0, "gamma", self.gamma, "must lie in the open interval (0, 1)")
        B, A, S, S2 = self.transitions.shape
        check(S == S2, "transitions", tuple(self.transitions.shape), "must have shape (B, A, S, S)")
        check(S >= 2, "n_states", S, "need at least 2 states")
        check(tuple(self.rewards.shape) == (B, A, S), "rewards", tuple(self.rewards.shape),
              f"must have shape {(B, A, S)}")
        check(tuple(self.start.shape) == (B,), "start", tuple(self.start.shape), f"must have shape {(B,)}")
        row_error = (self.transitions.sum(-1) - 1).abs().max().item()
        check(row_error < 1e-9, "transitions", f"rows off by {row_error:.2e}", "every row must sum to 1")

    @property
    def n_states(self) -> int:
        return self.transitions.shape[-1]

    @property
    def n_actions(self) -> int:
        return self.transitions.shape[1]

    def __len__(self) -> int:
        return self.transitions.shape[0]


@dataclass(frozen=True)
class Options:
    """``Z`` open-loop options (macro-actions) over ``A`` primitive actions.

    Option ``z`` plays ``actions[z, 0], actions[z, 1], ...`` and stops after ``tau`` primitive
    steps, with ``tau`` drawn from ``length_probs[z]`` (``length_probs[z, k] = P(tau = k + 1)``),
    independently of the trajectory. A primitive action is the option with ``tau = 1``.

    actions: (Z, L) long; length_probs: (Z, L) float64, rows sum to 1; names: Z labels.
    """

    actions: torch.Tensor
    length_probs: torch.Tensor
    names: tuple[str, ...]

    def __post_init__(self):
        Z, L = self.actions.shape
        check(Z >= 1, "n_options", Z, "need at least 1 option")
        check(tuple(self.length_probs.shape) == (Z, L), "length_probs", tuple(self.length_probs.shape),
              f"must have shape {(Z, L)}")
        check(len(self.names) == Z, "names", len(self.names), f"need one name per option ({Z})")
        row_error = (self.length_probs.sum(-1) - 1).abs().max().item()
        check(row_error < 1e-9, "length_probs", f"rows off by {row_error:.2e}", "every row must sum to 1")

    def __len__(self) -> int:
        return self.actions.shape[0]

    @property
    def mean_length(self) -> torch.Tensor:
        """(Z,) expected number of primitive steps E[tau] of each option."""
        steps = torch.arange(1, self.actions.shape[1] + 1, dtype=DTYPE)
        return self.length_probs @ steps

    @staticmethod
    def primitive(n_actions: int, action_names: tuple[str, ...] | None = None) -> Options:
        """The primitive view: one option per action, each lasting one step."""
        names = action_names or tuple(f"a{a}" for a in range(n_actions))
        return Options(torch.arange(n_actions).unsqueeze(1), torch.ones(n_actions, 1, dtype=DTYPE), names)

    @staticmethod
    def from_sequences(sequences: list[list[int]], length_probs: list[list[float]], names: list[str]) -> Options:
        """Options from action sequences of any lengths; shorter rows are padded (never played)."""
        L = max(len(seq) for seq in sequences)
        actions = torch.zeros(len(sequences), L, dtype=torch.long)
        probs = torch.zeros(len(sequences), L, dtype=DTYPE)
        for z, (seq, p) in enumerate(zip(sequences, length_probs)):
            check(len(p) == len(seq), f"length_probs[{z}]", len(p), f"need one probability per step ({len(seq)})")
            actions[z, : len(seq)] = torch.tensor(seq)
            probs[z, : len(p)] = torch.tensor(p, dtype=DTYPE)
        return Options(actions, probs, tuple(names))


@dataclass(frozen=True)
class SMDP:
    """Option models of ``B`` MDPs: the Bellman equation is ``V = max_z R[:, z] + P[:, z] @ V``.

    transitions: (B, Z, S, S), discounted: ``P[b, z, s, s'] = E[gamma^tau 1{s_tau = s'} | s, z]``.
    rewards: (B, Z, S), expected discounted reward collected while ``z`` runs from ``s``.
    start: (B,) long start states; gamma: the primitive per-step discount.
    """

    transitions: torch.Tensor
    rewards: torch.Tensor
    start: torch.Tensor
    gamma: float

    def __post_init__(self):
        # Stored successor-major (memory order B, S', Z, S): a Bellman backup then reads each MDP's
        # models as one contiguous (S', Z S) matrix, row by row, the order the compiled sweeps stream.
        if not self.transitions.permute(0, 3, 1, 2).is_contiguous():
            object.__setattr__(self, "transitions",
                               self.transitions.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1))

    def successor_major(self) -> torch.Tensor:
        """(B, S', Z S) view of the transitions: ``[b, s', z S + s] = P[b, z, s, s']``, without a copy."""
        B, Z, S, _ = self.transitions.shape
        return self.transitions.permute(0, 3, 1, 2).view(B, S, Z * S)

    @property
    def n_states(self) -> int:
        return self.transitions.shape[-1]

    @property
    def n_options(self) -> int:
        return self.transitions.shape[1]

    def __len__(self) -> int:
        return self.transitions.shape[0]

    def option_discount(self) -> torch.Tensor:
        """(B, Z, S) E[gamma^tau | s, z], the discount an option applies to what follows it."""
        return self.transitions.sum(-1)

    def gamma_bar(self, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) sup over states and allowed options of E[gamma^tau | s, z] (Theorem 3.6)."""
        discount = self.option_discount()
        if allowed is not None:
            discount = discount.masked_fill(~_expand(allowed, discount), 0.0)
        return discount.flatten(1).amax(1)

    def reward_bound(self) -> torch.Tensor:
        """(B,) R_max: the largest absolute expected reward of any option from any state."""
        return self.rewards.abs().flatten(1).amax(1)

    def select(self, index: torch.Tensor) -> SMDP:
        """The SMDPs at ``index`` along the batch (e.g. repeat tasks for many trials)."""
        return SMDP(self.transitions[index], self.rewards[index], self.start[index], self.gamma)


def _expand(allowed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast an allowed-options mask, (Z,) or (B, Z), to ``like``'s (B, Z, S)."""
    if allowed.dim() == 1:
        allowed = allowed.unsqueeze(0)
    return allowed.unsqueeze(-1).expand_as(like)


def option_models(mdp: MDPBatch, options: Options) -> SMDP:
    """Exact multi-step models of every option in every MDP.

    With ``M_k = prod_{j<=k} gamma P_{a_j}`` and survival ``P(tau >= k)``:
    ``R_z = sum_k P(tau >= k) M_{k-1} r_{a_k}`` and ``P_z = sum_k P(tau = k) M_k``.
    Cost: O(L B Z S^3) with L the longest option.
    """
    check(int(options.actions.max()) < mdp.n_actions, "options.actions", int(options.actions.max()),
          f"must index primitive actions 0..{mdp.n_actions - 1}")
    B, S, Z = len(mdp), mdp.n_states, len(options)
    eye = torch.eye(S, dtype=DTYPE).expand(B, Z, S, S)
    running = eye.clone()                               # M_{k-1}: discounted k-1-step kernel
    transitions = torch.zeros(B, Z, S, S, dtype=DTYPE)
    rewards = torch.zeros(B, Z, S, dtype=DTYPE)
    survival = 1.0 - torch.cumsum(options.length_probs, 1) + options.length_probs  # P(tau >= k+1)
    for k in range(options.actions.shape[1]):
        if float(survival[:, k].max()) == 0.0:
            break
        action = options.actions[:, k]
        step_reward = mdp.rewards[:, action]            # (B, Z, S)
        rewards += survival[:, k].view(1, Z, 1) * (running @ step_reward.unsqueeze(-1)).squeeze(-1)
        running = mdp.gamma * running @ mdp.transitions[:, action]
        transitions += options.length_probs[:, k].view(1, Z, 1, 1) * running
    return SMDP(transitions, rewards, mdp.start, mdp.gamma)
