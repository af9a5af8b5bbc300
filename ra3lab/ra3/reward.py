"""The rationale reward and its advantages: RA3's E-step objective and the related rewards, as one function.

Per decision line t of a rollout (r_t = 0 on other lines), with c >= 0 the penalty per thought:

============  ==========  ===================================================================
kind          paper       r_t
============  ==========  ===================================================================
ra3           RA3         code_t - c * 1[z_t = think]
penalty_only  (ablation)  -c * 1[z_t = think]  (no likelihood signal)
quiet_star    Quiet-STaR  code_t - plain_t - c * 1[z_t = think]
rlp           RLP         code_t - ema_t - c * 1[z_t = think]
latro         LaTRO       code_t - kl_coef * (latent_t - reference_t) - c * 1[z_t = think]
============  ==========  ===================================================================

- code_t = log pi(a_t | s_t, z_t): the frozen pi's log-likelihood of line t's code with the rollout's thoughts;
- plain_t = log pi(a_t | s_t): the same with no thought anywhere in the snippet (Quiet-STaR's gain of thinking);
- ema_t = log pi_EMA(a_t | s_t): no thought, under an exponential moving average of the latent policy's weights
  (RLP's gain against an EMA baseline model);
- latent_t - reference_t = log q(z_t | s_t) - log q_ref(z_t | s_t), with q_ref the model q started from: the
  per-sample estimate of LaTRO's KL penalty to the reference, weighted by kl_coef >= 0.

With ``entropy_coef`` > 0, every kind adds -entropy_coef * latent_t to r_t: the per-sample entropy of q, the
content term of the sequential ELBO's KL (Prop. 5.1; 0, the paper's practice, by default).

The return is sum_t r_t (``total``), or from line t on, sum_{t' >= t} r_t' (``to_go``, reward-to-go: a choice
is credited only with what follows it, which cuts variance). quiet_star and rlp differ from ra3 only by a term
per line that does not depend on z (plain_t, ema_t). When the rollouts of a snippet share their decision lines,
that term is the same for every rollout in the group, so under the ``group`` baseline quiet_star and rlp give
ra3's advantages (up to rounding). They differ from ra3 only under the ``none`` and ``no_thought`` baselines,
and in the reward level they report. latro's penalty depends on z, so it changes which thoughts are preferred.

Advantages subtract a baseline from each return:

- ``group``: the mean return of the G rollouts of the same snippet (GRPO / RLOO style, RA3's default);
- ``no_thought``: the return of the same snippet with no thought at all, the counterfactual of
  Quiet-STaR and RLP (their reward is the gain of thinking over not thinking);
- ``none``: the raw return (plain REINFORCE).
"""

from __future__ import annotations

import torch

from ra3lab.errors import check, check_choice

KINDS = ("ra3", "penalty_only", "quiet_star", "rlp", "latro")
BASELINES = ("group", "no_thought", "none")
RETURNS = ("total", "to_go")
NEEDS = {"quiet_star": {"plain": "the code log-likelihood with no thought, log pi(a_t | s_t)"},
         "rlp": {"ema": "the EMA model's code log-likelihood with no thought, log pi_EMA(a_t | s_t)"},
         "latro": {"latent": "q's log-probability of each latent, log q(z_t | s_t)",
                   "reference": "the reference's log-probability of each latent, log q_ref(z_t | s_t)"}}


def line_rewards(code: torch.Tensor, think: torch.Tensor, decision: torch.Tensor, c: float, kind: str = "ra3", *,
                 plain: torch.Tensor | None = None, ema: torch.Tensor | None = None,
                 latent: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                 kl_coef: float = 0.0, entropy_coef: float = 0.0) -> torch.Tensor:
    """Tensor[R, T] of r_t over R rollouts and T snippet lines; 0 where ``decision`` is False.

    code, plain, ema, latent, reference: float Tensor[R, T]; think, decision: bool Tensor[R, T]. Each kind
    uses the inputs of the module docstring's table and ignores the others (whose shape is still checked);
    kl_coef (>= 0) is latro's; entropy_coef (>= 0) needs ``latent``.
    latent and reference may carry gradients: they are neither detached nor modified, and the result keeps
    their graph.
    """
    check_choice("estep.reward", kind, KINDS)
    check(c >= 0, "c", c, "the penalty per thought must be >= 0")
    check(kl_coef >= 0, "estep.kl_coef", kl_coef, "the KL coefficient must be >= 0")
    check(entropy_coef >= 0, "estep.entropy_coef", entropy_coef, "the entropy coefficient must be >= 0")
    check(entropy_coef == 0 or latent is not None, "estep.entropy_coef", entropy_coef,
          "needs `latent`, q's log-probability of each latent, log q(z_t | s_t)")
    given = {"think": think, "decision": decision, "plain": plain, "ema": ema, "latent": latent,
             "reference": reference}
    for name, meaning in NEEDS.get(kind, {}).items():
        check(given[name] is not None, "estep.reward", kind, f"needs `{name}`, {meaning}")
    for name, tensor in given.items():
        if tensor is not None:
            check(tensor.shape == code.shape, name, tuple(tensor.shape),
                  f"must have the shape [R, T] of code, {tuple(code.shape)}")
    penalty = c * think.float()
    if kind == "ra3":
        reward = code - penalty
    elif kind == "penalty_only":
        reward = -penalty
    elif kind == "quiet_star":
        assert plain is not None                                  # NEEDS, checked above
        reward = code - plain - penalty
    elif kind == "rlp":
        assert ema is not None
        reward = code - ema - penalty
    else:
        assert latent is not None and reference is not None
        reward = code - kl_coef * (latent - reference) - penalty
    if entropy_coef:
        assert latent is not None                                 # checked above
        reward = reward - entropy_coef * latent
    return torch.where(decision.bool(), reward, torch.zeros_like(reward))


def returns_of(rewards: torch.Tensor, mode: str = "total") -> torch.Tensor:
    """Tensor[R] of summed rewards (``total``) or Tensor[R, T] of rewards-to-go (``to_go``) from rewards[R, T]."""
    check_choice("estep.returns", mode, RETURNS)
    return rewards.sum(1) if mode == "total" else rewards.flip(1).cumsum(1).flip(1)


def advantages(returns: torch.Tensor, baseline: str = "group", no_thought: torch.Tensor | None = None,
               normalize: bool = True) -> torch.Tensor:
    """Tensor[S, G, ...]: advantages of the returns (S snippets, G rollouts each; per line for rewards-to-go).

    no_thought: Tensor[S, ...], the return of each snippet without thoughts (needed by ``no_thought``).
    normalize: divide by the group's standard deviation (+1e-6), as GRPO does.
    """
    check_choice("estep.baseline", baseline, BASELINES)
    if baseline == "group":
        centred = returns - returns.mean(dim=1, keepdim=True)
    elif baseline == "no_thought":
        check(no_thought is not None, "estep.baseline", baseline, "needs the no-thought returns")
        assert no_thought is not None
        centred = returns - no_thought.unsqueeze(1)
    else:
        centred = returns
    return centred / (returns.std(dim=1, keepdim=True) + 1e-6) if normalize else centred
