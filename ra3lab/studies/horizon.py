"""T3 — Theorem 3.6: value iteration over options reaches an eps-optimal policy within
N = 1/(1 - gamma_bar) log(R_max / (eps (1 - gamma_bar))) sweeps; longer options shrink gamma_bar.

For each (tau, gamma) the family is rebuilt with options of that single length. Measured: sweeps
to an eps-optimal policy and to eps value error (exact), and primitive samples a Q-learner needs to
reach an eps-optimal policy. Reported: bound violations (measured > bound), Spearman correlation
of measured against bound, and how loose the bound is.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from omegaconf import DictConfig

from ra3lab.errors import check
from ra3lab.mdp.horizon import vi_sweeps_to_eps
from ra3lab.mdp.learning import q_learning
from ra3lab.mdp.planning import optimal_values, start_values
from ra3lab.studies.common import figure, generator, log_axes, make_family
from ra3lab.theory.bounds import effective_horizon, gamma_bar_fixed, thm_3_6_iterations
from ra3lab.theory.fit import spearman


def validate(config: DictConfig) -> None:
    check(len(config.taus) >= 3, "taus", list(config.taus), "need at least 3 option lengths to rank them against the bound")
    check(all(t >= 1 for t in config.taus), "taus", list(config.taus), "every tau must be >= 1")
    check(all(0 < g < 1 for g in config.gammas), "gammas", list(config.gammas), "every gamma must lie in (0, 1)")
    check(config.eps > 0, "eps", config.eps, "must be > 0")
    check(config.learner.seeds >= 1, "learner.seeds", config.learner.seeds, "need at least 1 seed")
    check(0 < config.learner.eps < 1, "learner.eps", config.learner.eps, "must lie in (0, 1): a fraction of V*(s0)")
    for tau, gamma in itertools.product(config.taus, config.gammas):
        make_family(config.env, n_tasks=1, taus=[int(tau)], gamma=float(gamma))


def measure(config: DictConfig, tau: int, gamma: float) -> dict:
    """Exact sweeps and Q-learning samples to eps for options of length tau at discount gamma."""
    family = make_family(config.env, taus=[tau], gamma=gamma)
    smdp = family.abstract
    sweeps = vi_sweeps_to_eps(smdp, float(config.eps))
    gamma_bar = float(smdp.gamma_bar().max())
    bound = thm_3_6_iterations(gamma_bar, float(smdp.reward_bound().max()), float(config.eps))
    learner = config.learner
    n = len(family.mdps) * int(learner.seeds)
    eps = float(learner.eps) * float(start_values(smdp, optimal_values(smdp)).min())   # relative to V*(s0)
    learned = q_learning(
        family.mdps, family.options,
        allowed=torch.ones(n, len(family.options), dtype=torch.bool),
        tasks=torch.arange(len(family.mdps)).repeat(int(learner.seeds)),
        n_decisions=int(learner.decisions), eval_every=int(learner.eval_every), eps=eps,
        generator=generator(int(config.seed) + tau), terminal=family.meta.get("terminal"),
    )
    reached = learned.error <= eps                                                     # (T, N)
    first = reached.long().argmax(0)
    decisions = torch.where(reached.any(0), learned.decisions[first].double(), float("inf"))
    samples = learned.samples_to_eps.double()
    return {
        "tau": tau, "gamma": gamma, "gamma_bar": gamma_bar, "gamma_bar_predicted": gamma_bar_fixed(gamma, tau),
        "effective_horizon": effective_horizon(gamma_bar),
        "policy_sweeps": float(sweeps["policy_sweeps"].double().max()),
        "value_sweeps": float(sweeps["value_sweeps"].double().max()),
        "bound": bound,
        "q_samples_median": float(samples.median()),       # inf when fewer than half the learners reached eps
        "q_decisions_median": float(decisions.median()),
        "q_reached_fraction": float(torch.isfinite(samples).double().mean()),
    }


def run(config: DictConfig, run) -> dict:
    rows = run.map(lambda _, setting: measure(config, int(setting[1]), float(setting[0])),
                   itertools.product(config.gammas, config.taus), "T3 settings", "theory/t3")
    bound = np.array([row["bound"] for row in rows])
    policy = np.array([row["policy_sweeps"] for row in rows])
    value = np.array([row["value_sweeps"] for row in rows])
    decisions = np.array([row["q_decisions_median"] for row in rows])
    rho = spearman(bound, policy)
    within = [spearman(bound[sel], policy[sel])["rho"] for sel in
              (np.array([row["gamma"] == gamma for row in rows]) for gamma in config.gammas)]
    figures = draw(config, rows, run)
    return {
        "thm_3_6_bound_violations": int((policy > bound).sum() + (value > bound).sum()),
        "thm_3_6_spearman": rho["rho"],
        "thm_3_6_spearman_p": rho["p"],
        "thm_3_6_spearman_within_gamma": float(np.mean(within)),
        "thm_3_6_spearman_value_sweeps": spearman(bound, value)["rho"],
        "thm_3_6_spearman_q_decisions": spearman(bound, decisions)["rho"] if np.isfinite(decisions).all() else None,
        "thm_3_6_looseness_median": float(np.median(bound / policy)),
        "settings": rows,
        "figures": [str(path) for path in figures],
    }


def draw(config: DictConfig, rows: list[dict], run):
    fig, (left, right) = figure(2, width=8.5)
    for color, gamma in zip(("C0", "C1", "C2", "C3", "C4"), config.gammas):
        sel = [row for row in rows if row["gamma"] == gamma]
        taus = [row["tau"] for row in sel]
        left.plot(taus, [row["policy_sweeps"] for row in sel], "o-", color=color, label=f"γ={gamma}: to ε-optimal policy")
        left.plot(taus, [row["value_sweeps"] for row in sel], "s:", color=color, ms=3, label=f"γ={gamma}: to ε value error")
        left.plot(taus, [row["bound"] for row in sel], "--", color=color, alpha=0.6, label=f"γ={gamma}: Thm 3.6 bound")
        right.plot(taus, [row["q_decisions_median"] for row in sel], "o-", color=color, label=f"γ={gamma}: decisions")
        right.plot(taus, [row["q_samples_median"] for row in sel], "s:", color=color, ms=3, label=f"γ={gamma}: primitive steps")
    for ax in (left, right):
        log_axes(ax, config.taus)
        ax.legend(fontsize=6)
    left.set(xlabel="option length τ", ylabel="value-iteration sweeps", title="value iteration: measured vs bound")
    right.set(xlabel="option length τ", ylabel="median to ε (learners that reached it)",
              title=f"Q-learning to error {config.learner.eps:g} V*(s0)")
    return run.save_figure(fig, "t3_horizon")
