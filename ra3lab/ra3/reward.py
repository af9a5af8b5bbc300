"""The rationale reward and its advantages: RA3's E-step objective and the variants it is compared with.

Per decision line t of a rollout, r_t = log pi(a_t | s_t, z_t) - c * 1[z_t = think] (``kind="ra3"``), or
only the penalty, -c * 1[think] (``kind="penalty_only"``, an ablation with no likelihood signal). The
return is sum_t r_t. Advantages subtract a baseline from each return:

- ``group``: the mean return of the G rollouts of the same snippet (GRPO / RLOO style, RA3's default);
- ``no_thought``: the return of the same snippet with no thought at all, the counterfactual of
  Quiet-STaR and RLP (their reward is the gain of thinking over not thinking);
- ``none``: the raw return (plain REINFORCE).
"""

from __future__ import annotations

import torch

from ra3lab.errors import check, check_choice

KINDS = ("ra3", "penalty_only")
BASELINES = ("group", "no_thought", "none")


def line_rewards(code: torch.Tensor, think: torch.Tensor, decision: torch.Tensor, c: float,
                 kind: str = "ra3") -> torch.Tensor:
    """Tensor[R, T] of r_t from code log-likelihoods (R, T), think flags (R, T) and decision lines (R, T)."""
    check_choice("estep.reward", kind, KINDS)
    check(c >= 0, "c", c, "the penalty per thought must be >= 0")
    likelihood = code if kind == "ra3" else torch.zeros_like(code)
    return (likelihood - c * think.float()) * decision.float()


def advantages(returns: torch.Tensor, baseline: str = "group", no_thought: torch.Tensor | None = None,
               normalize: bool = True) -> torch.Tensor:
    """Tensor[S, G]: advantages of the returns (S snippets, G rollouts each).

    no_thought: Tensor[S], the return of each snippet without thoughts (needed by ``no_thought``).
    normalize: divide by the group's standard deviation (+1e-6), as GRPO does.
    """
    check_choice("estep.baseline", baseline, BASELINES)
    if baseline == "group":
        centred = returns - returns.mean(dim=1, keepdim=True)
    elif baseline == "no_thought":
        check(no_thought is not None, "estep.baseline", baseline, "needs the no-thought returns")
        centred = returns - no_thought[:, None]
    else:
        centred = returns
    return centred / (returns.std(dim=1, keepdim=True) + 1e-6) if normalize else centred
