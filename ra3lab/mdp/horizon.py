"""Theorem 3.6 measured: how many value-iteration sweeps over options reach eps, per task."""

from __future__ import annotations

import torch

from ra3lab.errors import check
from ra3lab.mdp.planning import bellman_q, greedy_values, optimal_values, policy_evaluation
from ra3lab.mdp.pruning import check_allowed
from ra3lab.mdp.smdp import SMDP


def vi_sweeps_to_eps(smdp: SMDP, eps: float, allowed: torch.Tensor | None = None, max_sweeps: int = 10_000) -> dict:
    """Sweeps of value iteration from V_0 = 0 until eps, for each of the B SMDPs (restricted to ``allowed``).

    With V_k the values after k sweeps (k = 0, 1, ...):
    policy_sweeps (B,): the number of sweeps k + 1 whose last backup R_z + P_z V_k gives a greedy
    policy (ties to the lowest index) with ||V* - V^pi||_inf <= eps, V^pi by exact policy evaluation
    (a policy is read off a backup, so it costs one sweep more than the values it is greedy in);
    value_sweeps (B,): the first k with ||V_k - V*||_inf <= eps.
    V* comes from ``optimal_values``. float64 tensors; inf where max_sweeps did not suffice.
    """
    check(eps > 0, "eps", eps, "must be > 0")
    check(max_sweeps >= 0, "max_sweeps", max_sweeps, "must be >= 0")
    if allowed is not None:
        check_allowed(allowed, len(smdp), smdp.n_options)
    B, S = len(smdp), smdp.n_states
    v_star = optimal_values(smdp, allowed)
    policy_sweeps = torch.full((B,), float("inf"), dtype=torch.float64)
    value_sweeps = policy_sweeps.clone()
    values = torch.zeros(B, S, dtype=smdp.rewards.dtype)
    for sweep in range(max_sweeps + 1):
        value_sweeps[value_sweeps.isinf() & ((values - v_star).abs().amax(1) <= eps)] = sweep
        new_values, policy = greedy_values(bellman_q(smdp, values, allowed))
        if policy_sweeps.isinf().any():
            loss = (v_star - policy_evaluation(smdp, policy)).amax(1)
            policy_sweeps[policy_sweeps.isinf() & (loss <= eps)] = sweep + 1
        if not (policy_sweeps.isinf() | value_sweeps.isinf()).any():
            break
        values = new_values
    return {"policy_sweeps": policy_sweeps, "value_sweeps": value_sweeps}
