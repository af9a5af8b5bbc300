"""T3 — Theorem 3.6: value iteration over options reaches an eps-optimal policy within
N = 1/(1 - gamma_bar) log(R_max / (eps (1 - gamma_bar))) sweeps; longer options shrink gamma_bar.

Two families on one (tau, gamma) grid, each rebuilt per cell with options of the single length tau:
``env`` (the chain: its greedy policy is eps-optimal as soon as the goal's value reaches the start,
so its sweeps are distance / tau whatever gamma is) and ``second_env`` (the annuity: a near lump
sum against a distant reward stream, whose discounted worth builds up over about 1/(1 - gamma_bar)
sweeps before the greedy policy prefers it). Measured per cell: value-iteration sweeps to an
eps-optimal policy and to eps value error (exact), and SMDP Q-learners' primitive samples and
decisions until their greedy policy is eps-optimal from the start, with the same primitive-step
budget and episode length at every tau (medians over seeds; inf = censored: fewer than half
reached eps within the budget).

Per family and measure: bound violations (measured > bound; sweep measures only, the bound's
units), Spearman rho with the bound, log-log slopes in tau (per gamma) and in 1/(1 - gamma_bar)
(at fixed tau, and pooled over the grid), and two verdicts: ``grows_with_horizon`` (the fixed-tau
slope's confidence interval lies above 0) and ``ordered_like_bound`` (rho >= RANK_THRESHOLD).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import ConfigError, check
from ra3lab.mdp.horizon import vi_sweeps_to_eps
from ra3lab.mdp.learning import q_learning
from ra3lab.mdp.planning import optimal_values, start_values
from ra3lab.plots.style import figure, log_axes
from ra3lab.stats import loglog_slope, loglog_slope_within, spearman
from ra3lab.studies.common import generator, make_env
from ra3lab.theory.bounds import effective_horizon, gamma_bar_fixed, thm_3_6_iterations

ENVS = ("env", "second_env")
MEASURES = ("policy_sweeps", "value_sweeps", "learner_samples", "learner_decisions")
SWEEPS = ("policy_sweeps", "value_sweeps")    # in the bound's units: its violations are counted
RANK_THRESHOLD = 0.5                          # Spearman rho with the bound at or above it: ordered like the bound


def validate(config: DictConfig) -> None:
    check(len(config.taus) >= 3, "taus", list(config.taus), "need at least 3 option lengths to fit a slope in tau")
    check(all(int(t) == t and t >= 1 for t in config.taus), "taus", list(config.taus),
          "every tau must be an integer >= 1")
    check(all(0 < g < 1 for g in config.gammas), "gammas", list(config.gammas), "every gamma must lie in (0, 1)")
    check(config.eps > 0, "eps", config.eps, "must be > 0")
    learner = config.learner
    check(learner.seeds >= 1, "learner.seeds", learner.seeds, "need at least 1 seed")
    check(0 < learner.eps < 1, "learner.eps", learner.eps, "must lie in (0, 1): a fraction of V*(s0)")
    check(learner.budget >= 1, "learner.budget", learner.budget, "must be >= 1 primitive step")
    check(learner.eval_steps >= 1, "learner.eval_steps", learner.eval_steps, "must be >= 1 primitive step")
    check(learner.episode_length > 0, "learner.episode_length", learner.episode_length,
          "must be > 0 (units of n_states)")
    for key in ENVS:
        check(OmegaConf.is_dict(config[key]) and "_target_" in config[key], key, config[key],
              f"pick a family from envs/ with {'env' if key == 'env' else 'envs@' + key}=<name>, e.g. annuity or chain")
    names = [make_env(config[key], n_tasks=1, taus=[int(tau)], gamma=float(gamma)).name
             for key, tau, gamma in itertools.product(ENVS, config.taus, config.gammas)]
    check(names[0] != names[-1], "second_env", names[-1], f"must be another family than env ({names[0]})")


def measure(config: DictConfig, key: str, gamma: float, tau: int) -> dict:
    """One cell: the family ``config[key]`` with options of length tau at discount gamma, solved exactly
    (:func:`sweep_cell`) and learned (:func:`learn`)."""
    family = make_env(config[key], taus=[tau], gamma=gamma)
    return ({"family": family.name, "tau": tau, "gamma": gamma,
             "gamma_bar_predicted": float(gamma_bar_fixed(gamma, tau))}
            | sweep_cell(family, float(config.eps)) | learn(config.learner, family, tau, 1000 * int(config.seed) + tau))


def sweep_cell(family, eps: float) -> dict:
    """Exact value iteration on a family: gamma_bar (sup over tasks), effective_horizon, the Theorem 3.6
    bound (R_max the largest option reward), and the sweeps to an eps-optimal policy and to eps value
    error (max over tasks; inf if never)."""
    smdp = family.abstract
    sweeps = vi_sweeps_to_eps(smdp, eps)
    gamma_bar = float(smdp.gamma_bar().max())
    return {
        "gamma_bar": gamma_bar, "effective_horizon": float(effective_horizon(gamma_bar)),
        "bound": float(thm_3_6_iterations(gamma_bar, float(smdp.reward_bound().max()), eps)),
        "policy_sweeps": float(sweeps["policy_sweeps"].max()),
        "value_sweeps": float(sweeps["value_sweeps"].max()),
    }


def learn(learner: DictConfig, family, tau: int, seed: int) -> dict:
    """SMDP Q-learners (``learner.seeds`` per task) until their greedy policy is within ``learner.eps`` V*(s0)
    of optimal at the start. Budget, evaluation interval and episodes are primitive steps, the same at every
    tau. Returns the medians over learners of primitive samples and decisions to eps (inf when fewer than half
    reached it) and learner_censored, the number of learners that never did."""
    smdp = family.abstract
    n = len(family.mdps) * int(learner.seeds)
    eps = float(learner.eps) * float(start_values(smdp, optimal_values(smdp)).min())
    learned = q_learning(
        family.mdps, family.options,
        allowed=torch.ones(n, len(family.options), dtype=torch.bool),
        tasks=torch.arange(len(family.mdps)).repeat(int(learner.seeds)),
        n_decisions=math.ceil(learner.budget / tau), eval_every=max(1, int(learner.eval_steps) // tau), eps=eps,
        generator=generator(seed), terminal=family.meta.get("terminal"),
        horizon=math.ceil(learner.episode_length * family.mdps.n_states / tau), stop_at_eps=True,
    )
    reached = torch.isfinite(learned.samples_to_eps)
    first = (learned.error <= eps).long().argmax(0)
    decisions = torch.where(reached, learned.decisions[first].double(), float("inf"))
    return {
        "learner_samples": float(np.median(learned.samples_to_eps.numpy())),
        "learner_decisions": float(np.median(decisions.numpy())),
        "learner_censored": int((~reached).sum()),
        "learners": n,
    }


def _fit(function, *args) -> dict | None:
    """``function(*args)``, or None where the cells cannot support the fit (too few, or x constant)."""
    try:
        return function(*args)
    except ConfigError:
        return None


def slopes(rows: list[dict], measure: str) -> dict:
    """Log-log slopes of ``measure`` over the cells where it is finite and > 0: in tau for each gamma
    (slope_tau, keyed by gamma), in 1/(1 - gamma_bar) at fixed tau with one intercept per tau
    (slope_horizon: gamma's effect alone), and in 1/(1 - gamma_bar) pooled over the grid
    (slope_horizon_pooled: tau and gamma together). Each a loglog fit with its 95% CI, or None."""
    usable = [row for row in rows if 0 < row[measure] < math.inf]
    column = {key: np.array([row[key] for row in usable]) for key in ("tau", "gamma", "effective_horizon", measure)}
    by_tau = {f"{gamma:g}": _fit(loglog_slope, column["tau"][column["gamma"] == gamma],
                                 column[measure][column["gamma"] == gamma])
              for gamma in sorted({row["gamma"] for row in rows})}
    return {
        "slope_tau": by_tau,
        "slope_horizon": _fit(loglog_slope_within, column["effective_horizon"], column[measure], column["tau"]),
        "slope_horizon_pooled": _fit(loglog_slope, column["effective_horizon"], column[measure]),
    }


def bound_violations(measured, bound) -> int:
    """Cells where the measured sweeps exceed the bound (an unreached inf counts)."""
    return int((np.asarray(measured, dtype=float) > np.asarray(bound, dtype=float)).sum())


def analyse(rows: list[dict], measure: str) -> dict:
    """One measure of one family's cells against the bound.

    censored: cells whose value is inf (left out of rho and slopes); violations (sweep measures only);
    spearman (rho and p over the finite cells, None when fewer than 3 or constant) and ordered_like_bound
    (rho >= RANK_THRESHOLD); the slopes of :func:`slopes`; grows_with_horizon (slope_horizon's CI lies
    above 0; None without that fit).
    """
    value = np.array([row[measure] for row in rows], dtype=float)
    bound = np.array([row["bound"] for row in rows])
    finite = np.isfinite(value)
    rho = spearman(bound[finite], value[finite]) if finite.sum() >= 3 and np.ptp(value[finite]) > 0 else None
    fits = slopes(rows, measure)
    return {
        "censored": int((~finite).sum()),
        "violations": bound_violations(value, bound) if measure in SWEEPS else None,
        "spearman": None if rho is None else rho["rho"],
        "spearman_p": None if rho is None else rho["p"],
        "ordered_like_bound": None if rho is None else rho["rho"] >= RANK_THRESHOLD,
        **fits,
        "grows_with_horizon": None if fits["slope_horizon"] is None else fits["slope_horizon"]["low"] > 0,
    }


def summarise(rows: list[dict]) -> dict:
    """Every measure of one family analysed, the bound's own slopes beside them, and how loose it is."""
    return {
        "measures": {measure: analyse(rows, measure) for measure in MEASURES},
        "bound_slopes": slopes(rows, "bound"),
        "looseness_median": float(np.median([row["bound"] / row["policy_sweeps"] for row in rows])),
    }


def run(config: DictConfig, run) -> dict:
    cells = list(itertools.product(ENVS, config.gammas, config.taus))
    rows = run.map(lambda _, cell: measure(config, cell[0], float(cell[1]), int(cell[2])), cells, "T3 cells",
                   "theory/t3")
    names = list(dict.fromkeys(row["family"] for row in rows))
    families = {name: summarise([row for row in rows if row["family"] == name]) for name in names}
    figures = [path for name in names
               for path in draw(config, name, [row for row in rows if row["family"] == name], run)]
    policy_rho = [family["measures"]["policy_sweeps"]["spearman"] for family in families.values()]
    return {
        "rank_threshold": RANK_THRESHOLD,
        "families": families,
        "thm_3_6_bound_violations": sum(family["measures"][m]["violations"]
                                        for family in families.values() for m in SWEEPS),
        "thm_3_6_spearman": min((rho for rho in policy_rho if rho is not None), default=None),
        "thm_3_6_looseness_median": float(np.median([row["bound"] / row["policy_sweeps"] for row in rows])),
        "settings": rows,
        "figures": [str(path) for path in figures],
    }


def draw(config: DictConfig, name: str, rows: list[dict], run):
    """Three panels for one family: sweeps and bound against tau; policy sweeps and bound against
    1/(1 - gamma_bar) at fixed tau; the learners' samples and decisions against tau, censored cells
    marked at the budget (and those eps-optimal before learning at 1), offset per gamma."""
    fig, (sweeps, horizon, learner) = figure(3, width=13, height=3.6)
    colors = [f"C{i}" for i in range(10)]
    for index, (color, gamma) in enumerate(zip(colors, config.gammas)):
        sel = [row for row in rows if row["gamma"] == gamma]
        taus = [row["tau"] for row in sel]
        sweeps.plot(taus, [row["policy_sweeps"] for row in sel], "o-", color=color,
                    label=f"γ={gamma}: to ε-optimal policy")
        sweeps.plot(taus, [row["value_sweeps"] for row in sel], "s:", color=color, ms=3,
                    label=f"γ={gamma}: to ε value error")
        sweeps.plot(taus, [row["bound"] for row in sel], "--", color=color, alpha=0.6,
                    label=f"γ={gamma}: Thm 3.6 bound")
        for key, style, label in (("learner_samples", "o-", "primitive samples"),
                                  ("learner_decisions", "s:", "decisions")):
            learner.plot(taus, [row[key] for row in sel], style, color=color, ms=4, label=f"γ={gamma}: {label}")
        for value, at, marker, label in ((math.inf, config.learner.budget, "^", "censored (> budget)"),
                                         (0.0, 1.0, "v", "0: ε-optimal before learning")):
            marked = [row["tau"] for row in sel if row["learner_samples"] == value]
            learner.plot(marked, [at * 1.15**index] * len(marked), marker, color=color, mfc="none", ms=9,
                         label=f"γ={gamma}: {label}" if marked else None)
    for color, tau in zip(colors, config.taus):
        sel = sorted((row for row in rows if row["tau"] == tau), key=lambda row: row["effective_horizon"])
        horizons = [row["effective_horizon"] for row in sel]
        horizon.plot(horizons, [row["policy_sweeps"] for row in sel], "o-", color=color,
                     label=f"τ={tau}: to ε-optimal policy")
        horizon.plot(horizons, [row["bound"] for row in sel], "--", color=color, alpha=0.6,
                     label=f"τ={tau}: Thm 3.6 bound")
    for ax in (sweeps, learner):
        log_axes(ax, config.taus)
    horizon.set(xscale="log", yscale="log")
    for ax in (sweeps, horizon, learner):
        ax.legend(fontsize=6)
    censored = sum(row["learner_censored"] for row in rows)
    sweeps.set(xlabel="option length τ", ylabel="value-iteration sweeps", title=f"{name}: value iteration vs bound")
    horizon.set(xlabel="effective horizon 1/(1-γ̄)", ylabel="value-iteration sweeps",
                title=f"{name}: γ's effect at fixed τ")
    learner.set(xlabel="option length τ", ylabel="median to ε (inf: censored)",
                title=f"{name}: Q-learning to {config.learner.eps:g} V*(s0) ({censored} learners censored)")
    return run.save_figure(fig, f"t3_horizon_{name}")
