"""T2 — Theorem 3.5 as stated: how many expert samples make the pruned set near-optimal AND compact?

The theorem: with |D_E| = Theta(K log(|Z|/delta) / sigma) expert samples, with probability >= 1 - delta
E_M[Delta(M, Z_hat)] <= eps and every (eps, sigma)-suboptimal decision is ruled out (definitions in
``ra3lab.mdp.pruning``), with K = |Z| in one reading and K = |Z_eps| in the other. On star mazes
(|Z| = corridors + distractor options, Z_eps = the goal corridors) the study measures, per cell
(|Z|, |Z_eps|, sigma) x noise model x pruning rule, the smallest |D_E| from which both criteria hold in
at least 1 - delta of the trials (and each criterion alone).

Verdict per (noise model, rule) and form: each form is a sufficient condition n <= c * K log(|Z|/delta) /
sigma. One constant c per form is fitted on a seeded half of the settings (the smallest c covering
them); on the other half a setting violates the form when the data show failure at a size >= c *
prediction (a censored setting, never reaching success within max_samples, violates it when c *
prediction < max_samples). Tightness: the median of measured / (c * prediction) on the test half. Log-log
slopes with CIs along each knob through the base point describe the shape.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from ra3lab.errors import check
from ra3lab.mdp.pruning import (
    CRITERIA,
    NOISE_MODELS,
    PRUNING_RULES,
    prefix_counts,
    pruning_curves,
    reveal_probabilities,
    suboptimal_decisions,
    z_eps,
)
from ra3lab.plots.style import figure, log_axes
from ra3lab.stats import binomial_upper_bound, loglog_slope
from ra3lab.studies.common import generator, make_env
from ra3lab.theory.bounds import thm_3_5_samples_eps, thm_3_5_samples_full

KNOBS = {"n_options": "|Z|", "n_eps": "|Z_eps|", "sigma": "σ"}
FORMS = {"K=|Z|": "predicted_full", "K=|Z_eps|": "predicted_eps"}
DESIGNS = ("grid", "axes")
DEFAULT_THRESHOLD = 0.05   # frequency rule: keep a decision holding >= 5% of all revealed decisions


def names(value) -> list[str]:
    """A config entry that holds one name or a list of names, as a list."""
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def rule_kwargs(config: DictConfig, rule: str, n_eps: int) -> dict:
    """The parameters of ``rule``: frequency's threshold (default DEFAULT_THRESHOLD), top_k's k (default
    |Z_eps| of the setting), from ``config.rule_kwargs``."""
    given = dict(config.rule_kwargs)
    if rule == "frequency":
        return {"threshold": float(given.get("threshold", DEFAULT_THRESHOLD))}
    if rule == "top_k":
        return {"k": int(given.get("k") or n_eps)}
    return {}


def validate(config: DictConfig) -> None:
    check(config.eps > 0, "eps", config.eps, "must be > 0")
    check(0 < config.delta < 1, "delta", config.delta, "must lie in (0, 1)")
    check(config.trials >= 2, "trials", config.trials, "need at least 2 trials per sample size")
    check(config.max_samples >= 2, "max_samples", config.max_samples, "must be >= 2")
    for rule in names(config.rule):
        check(rule in PRUNING_RULES, "rule", rule, f"choose one or a list of {', '.join(PRUNING_RULES)}")
    for model in names(config.noise_model):
        check(model in NOISE_MODELS, "noise_model", model, f"choose one or a list of {', '.join(NOISE_MODELS)}")
    check(0 <= config.noise <= 1, "noise", config.noise, "must lie in [0, 1]")
    given = dict(config.rule_kwargs)
    check(set(given) <= {"threshold", "k"}, "rule_kwargs", sorted(given), "only threshold (frequency) and k (top_k)")
    check(0 <= given.get("threshold", DEFAULT_THRESHOLD) <= 1, "rule_kwargs.threshold", given.get("threshold"),
          "must lie in [0, 1]")
    check(given.get("k") is None or given["k"] >= 1, "rule_kwargs.k", given.get("k"), "must be >= 1 (or null: |Z_eps|)")
    check(0 < config.suboptimal_ratio <= 1, "suboptimal_ratio", config.suboptimal_ratio, "must lie in (0, 1]")
    check(config.reveal_samples >= 100, "reveal_samples", config.reveal_samples, "need >= 100 samples to estimate p_z")
    check(config.design in DESIGNS, "design", config.design, f"choose one of {', '.join(DESIGNS)}")
    for knob in KNOBS:
        values = list(config.vary[knob])
        check(len(values) >= 3, f"vary.{knob}", values, "need at least 3 values to fit a slope")
        check(config.base[knob] in values, f"base.{knob}", config.base[knob], f"must be one of vary.{knob} = {values}")
    check(all(0 < s <= 1 for s in config.vary.sigma), "vary.sigma", list(config.vary.sigma),
          "every sigma must lie in (0, 1]")
    check(all(n >= 1 for n in config.vary.n_eps), "vary.n_eps", list(config.vary.n_eps), "every |Z_eps| must be >= 1")
    check(len(points(config)) >= 2, "vary", "fewer than 2 possible settings", "|Z| must leave room for the corridors")
    make_env(config.env, n_tasks=1, **star_overrides(config, int(config.base.n_options), int(config.base.n_eps)))


def star_overrides(config: DictConfig, n_options: int, n_eps: int) -> dict:
    """Star-maze keys for |Z| and |Z_eps|: max(env.n_corridors, |Z_eps|) corridors, the first |Z_eps| with
    goals, and |Z| - corridors distractor options."""
    corridors = max(int(config.env.n_corridors), n_eps)
    return {"n_corridors": corridors, "n_goal_corridors": n_eps, "n_distractors": n_options - corridors}


def points(config: DictConfig) -> list[tuple[int, int, float]]:
    """The (|Z|, |Z_eps|, sigma) settings: every combination (design grid) or the base point and one knob
    varied at a time (design axes); settings whose corridors do not fit in |Z| are skipped."""
    base = base_point(config)
    n_options, n_eps = [int(v) for v in config.vary.n_options], [int(v) for v in config.vary.n_eps]
    sigmas = [float(v) for v in config.vary.sigma]
    if config.design == "grid":
        chosen = list(itertools.product(n_options, n_eps, sigmas))
    else:
        chosen = ([(n, base[1], base[2]) for n in n_options] + [(base[0], n, base[2]) for n in n_eps]
                  + [(base[0], base[1], sigma) for sigma in sigmas])
    unique = list(dict.fromkeys(chosen))
    return [p for p in unique if star_overrides(config, p[0], p[1])["n_distractors"] >= 0]


def settings(config: DictConfig) -> list[tuple]:
    """Work items (setting index, |Z|, |Z_eps|, sigma, noise model, rule), one per cell; the cells of a
    setting and noise model are consecutive, so they share one expert dataset (``expert_data``).
    The index places the setting in the fit/test split (``fit_half``)."""
    return [(index, *point, model, rule) for index, point in enumerate(points(config))
            for model in names(config.noise_model) for rule in names(config.rule)]


@functools.lru_cache(maxsize=1)
def setting_target(env: DictConfig, overrides: tuple, eps: float, exact_max_options: int) -> tuple:
    """(family, Z_eps, whether Z_eps equals the family's needed options) of one setting; cached for the
    consecutive cells that share it."""
    family = make_env(env, **dict(overrides))
    target = z_eps(family.abstract, eps, exact_max_options=exact_max_options)
    needed = torch.zeros(len(family.options), dtype=torch.bool)
    needed[family.meta["needed_options"]] = True
    return family, target, bool(torch.equal(needed, target.mask))


@functools.lru_cache(maxsize=1)
def expert_data(config: DictConfig, n_options: int, n_eps: int, sigma: float, model: str) -> dict:
    """The prefix counts of ``trials`` expert datasets of one setting and noise model, the reveal
    probabilities p_z and the (eps, sigma)-suboptimal decisions; cached for the rules that share them.

    Every cell draws from the same seed: the expert's decisions are then identical across |Z| and noise
    models (the star's optimal trajectories do not depend on the distractors) and nested across sigma,
    so differences between cells are not sampling noise between datasets (common random numbers)."""
    family, target, matches = setting_target(config.env, tuple(star_overrides(config, n_options, n_eps).items()),
                                             float(config.eps), int(config.exact_max_options))
    noise = {"noise_model": model, "noise": 0.0 if model == "none" else float(config.noise),
             "distractors": ~target.mask}
    terminal, seed = family.meta.get("terminal"), 2 * int(config.seed)
    reveal = reveal_probabilities(family.abstract, sigma, generator(seed + 1), int(config.reveal_samples), terminal,
                                  **noise)
    suboptimal, sigma_needed = suboptimal_decisions(reveal, target.mask, float(config.suboptimal_ratio))
    prefixes = prefix_counts(family.abstract, int(config.trials), sample_sizes(int(config.max_samples)), sigma,
                             generator(seed), terminal, **noise)
    return {"family": family, "target": target, "matches": matches, "suboptimal": suboptimal,
            "sigma_needed": sigma_needed, "prefixes": prefixes}


def sample_sizes(max_samples: int, ratio: float = 1.15) -> list[int]:
    """A geometric grid 1, 2, ..., max_samples fine enough to read a required size off."""
    return sorted({round(ratio**k) for k in range(int(np.log(max_samples) / np.log(ratio)) + 1)} | {max_samples})


def measure(config: DictConfig, step: int, index: int, n_options: int, n_eps: int, sigma: float, model: str,
            rule: str) -> dict:
    """One cell: the sizes from which success, near-optimality and compactness hold in >= 1 - delta of the
    trials (n_required, n_near_optimal, n_compact; None: not by max_samples), the largest size that
    clearly fails (n_failing), the rows that kept nothing (empty_rows; by_fallback: more than half the
    rows at n_required fell back to the full set, which succeeds only where no decision is suboptimal),
    each form's prediction, and at the base point the curves."""
    data = expert_data(config, n_options, n_eps, sigma, model)
    target, sizes = data["target"], sample_sizes(int(config.max_samples))
    kwargs = rule_kwargs(config, rule, target.size)
    curves = pruning_curves(data["family"].abstract, data["prefixes"], sizes, rule, float(config.eps),
                            float(config.delta), target, data["suboptimal"], **kwargs)
    required, delta = curves["n_success"], float(config.delta)
    failing = largest_failing(sizes, curves["success"], int(config.trials), 1 - delta)
    return {
        "setting": index, "n_options": n_options, "n_eps": int(target.size), "n_eps_planted": n_eps, "sigma": sigma,
        "noise_model": model, "rule": rule, **kwargs,
        "z_eps_exact": bool(target.exact), "z_eps_matches_needed": data["matches"],
        "sigma_needed": data["sigma_needed"], "n_suboptimal": int(data["suboptimal"].sum()),
        "n_required": required, "n_near_optimal": curves["n_near_optimal"], "n_compact": curves["n_compact"],
        "censored": required is None, "n_failing": failing,
        "empty_rows": curves["empty_total"],
        "by_fallback": required is not None and 2 * curves["empty"][sizes.index(required)] > int(config.trials),
        "predicted_full": float(thm_3_5_samples_full(n_options, sigma, delta)),
        "predicted_eps": float(thm_3_5_samples_eps(target.size, n_options, sigma, delta)),
    } | (curves_at_base(curves) if (n_options, n_eps, sigma) == base_point(config) else {})


def base_point(config: DictConfig) -> tuple[int, int, float]:
    return int(config.base.n_options), int(config.base.n_eps), float(config.base.sigma)


def curves_at_base(curves: dict) -> dict:
    """The success curves of a base-point cell, for the figure (other cells keep only their sizes)."""
    return {f"curve_{criterion}": curves[criterion] for criterion in CRITERIA} | {"mean_size": curves["mean_size"]}


def largest_failing(sizes: list[int], success: list[float], trials: int, target: float,
                    confidence: float = 0.95) -> int:
    """The largest size at which the data show failure: the one-sided Clopper-Pearson upper bound of
    P(success) from ``trials`` trials lies below ``target`` (0 if no size fails clearly). A size whose
    estimate falls just short of the target by sampling noise does not count."""
    upper = binomial_upper_bound(np.rint(np.asarray(success) * trials), trials, confidence)
    failing = [n for n, bound in zip(sizes, upper) if bound < target]
    return failing[-1] if failing else 0


def fit_half(n_settings: int, seed: int) -> np.ndarray:
    """(n_settings,) bool: the settings whose cells fit the constants, half of a seeded permutation."""
    order = np.random.default_rng(seed).permutation(n_settings)
    fit = np.zeros(n_settings, dtype=bool)
    fit[order[: (n_settings + 1) // 2]] = True
    return fit


def form_verdict(measured, failing, predicted, fit, max_samples: int, tolerance: int = 0) -> dict:
    """Judge ``n <= c * predicted`` as a sufficient condition.

    measured: (N,) samples needed (nan where censored); failing: (N,) the largest size known to fail;
    predicted: (N,) the form's prediction; fit: (N,) bool, the cells that fit c. c is the smallest
    constant covering the uncensored fit cells. A cell violates the form when failing >= c * predicted
    (for a censored cell: failure at max_samples >= c * predicted). Returns c; fit_cells, test_cells;
    violations (test half) and fit_violations (censored fit cells c cannot cover); censored_undecided
    (censored test cells with c * predicted > max_samples); tightness, the median measured / (c *
    predicted) over uncensored test cells (1: as tight as on the fit half's worst cell); holds:
    violations + fit_violations <= tolerance (None, with a note, when no fit cell reached success).
    """
    measured, failing, predicted = (np.asarray(v, dtype=float) for v in (measured, failing, predicted))
    fit = np.asarray(fit, dtype=bool)
    censored = np.isnan(measured)
    base = {"fit_cells": int(fit.sum()), "test_cells": int((~fit).sum()), "censored_test": int((censored & ~fit).sum()),
            "censored_fit": int((censored & fit).sum())}
    if not (fit & ~censored).any():
        return base | {"c": None, "violations": None, "fit_violations": None, "censored_undecided": None,
                       "tightness": None, "holds": None, "note": "no fit setting reached success: c cannot be fitted"}
    c = float(np.max(measured[fit & ~censored] / predicted[fit & ~censored]))
    violated = failing >= c * predicted
    test = ~fit & ~censored
    return base | {
        "c": c,
        "violations": int((violated & ~fit).sum()),
        "fit_violations": int((violated & fit).sum()),
        "censored_undecided": int((censored & ~fit & ~violated).sum()),
        "tightness": float(np.median(measured[test] / (c * predicted[test]))) if test.any() else None,
        "holds": bool((violated & ~fit).sum() + (violated & fit).sum() <= tolerance),
    }


def on_axis(row: dict, base: dict, knob: str) -> bool:
    """Whether a setting lies on the line through the base point along ``knob``."""
    return all(row[key if key != "n_eps" else "n_eps_planted"] == base[key] for key in KNOBS if key != knob)


def axis_slopes(rows: list[dict], base: dict) -> dict:
    """Per knob: log-log slope with 95% CI of the samples needed along the line through the base point,
    next to each form's slope over the same settings; a note where fewer than 3 settings reached success."""
    slopes = {}
    for knob in KNOBS:
        sel = [row for row in rows if on_axis(row, base, knob) and row["n_required"] is not None]
        x = np.array([row[knob] for row in sel], dtype=float)
        if len(sel) < 3 or np.unique(x).size < 2:
            slopes[knob] = {"slope": None, "note": "fewer than 3 settings on this axis reached success"}
            continue
        slopes[knob] = loglog_slope(x, [row["n_required"] for row in sel]) | {
            column: loglog_slope(x, [row[column] for row in sel])["slope"] for column in FORMS.values()}
    return slopes


def judge(rows: list[dict], config: DictConfig) -> tuple[dict, dict]:
    """(verdicts, slopes) per "noise_model/rule": each form's ``form_verdict`` and the axis slopes."""
    fit = fit_half(len(points(config)), int(config.seed))
    base = {"n_options": int(config.base.n_options), "n_eps": int(config.base.n_eps), "sigma": float(config.base.sigma)}
    verdicts, slopes = {}, {}
    for model, rule in itertools.product(names(config.noise_model), names(config.rule)):
        group = [row for row in rows if row["noise_model"] == model and row["rule"] == rule]
        measured = [np.nan if row["n_required"] is None else row["n_required"] for row in group]
        failing = [row["n_failing"] for row in group]
        halves = fit[[row["setting"] for row in group]]
        verdicts[f"{model}/{rule}"] = {
            form: form_verdict(measured, failing, [row[column] for row in group], halves, int(config.max_samples),
                               int(config.violation_tolerance))
            for form, column in FORMS.items()}
        slopes[f"{model}/{rule}"] = axis_slopes(group, base)
    return verdicts, slopes


def run(config: DictConfig, run) -> dict:
    """Summary: thm_3_5_verdicts and thm_3_5_slopes per "noise_model/rule" (``judge``), the forms holding
    per group, whether every Z_eps is exact and equals the star's needed options, the rows that kept
    nothing and the cells that succeed through them, the fit half's settings, one row per cell, figures."""
    rows = run.map(lambda step, item: measure(config, step, *item), settings(config), "T2 cells", "theory/t2")
    verdicts, slopes = judge(rows, config)
    fit = fit_half(len(points(config)), int(config.seed))
    return {
        "thm_3_5_verdicts": verdicts,
        "thm_3_5_forms_holding": {group: [form for form, v in forms.items() if v["holds"]]
                                  for group, forms in verdicts.items()},
        "thm_3_5_slopes": slopes,
        "z_eps_all_exact": all(row["z_eps_exact"] for row in rows),
        "z_eps_matches_needed": all(row["z_eps_matches_needed"] for row in rows),
        "empty_rows_total": sum(row["empty_rows"] for row in rows),
        "cells_succeeding_by_fallback": sum(row["by_fallback"] for row in rows),
        "fit_settings": [list(p) for p, f in zip(points(config), fit) if f],
        "settings": [{key: value for key, value in row.items() if not key.startswith("curve_") and key != "mean_size"}
                     for row in rows],
        "figures": [str(path) for path in draw_forms(rows, verdicts, config, run) + draw_curves(rows, config, run)],
    }


def panels(config: DictConfig):
    """A (noise models x rules) grid of axes in the project's style, and the (model, rule) of each."""
    models, rules = names(config.noise_model), names(config.rule)
    fig, axes = figure(len(models) * len(rules), 3.4 * len(rules), 2.9, len(rules), layout=None)
    fig.subplots_adjust(hspace=0.5, wspace=0.3)                       # cheaper than a constrained layout
    cells = [(model, rule) for model in models for rule in rules]     # row by row, as the axes
    return fig, [(ax, model, rule) for ax, (model, rule) in zip(axes, cells)]


def draw_forms(rows: list[dict], verdicts: dict, config: DictConfig, run):
    """Measured samples needed against c * prediction of each form, fit half hollow, test half filled,
    censored settings as triangles at max_samples; points above the diagonal violate the form."""
    fig, cells = panels(config)
    fit = fit_half(len(points(config)), int(config.seed))
    max_samples = int(config.max_samples)
    for ax, model, rule in cells:
        group = [row for row in rows if row["noise_model"] == model and row["rule"] == rule]
        lows, highs = [], []
        for (form, column), color in zip(FORMS.items(), ("tab:blue", "tab:orange")):
            verdict = verdicts[f"{model}/{rule}"][form]
            if verdict["c"] is None:
                continue
            x = np.array([verdict["c"] * row[column] for row in group])
            y = np.array([max_samples if row["n_required"] is None else row["n_required"] for row in group],
                         dtype=float)
            censored = np.array([row["n_required"] is None for row in group])
            half = fit[[row["setting"] for row in group]]
            label = f"{form}: c={verdict['c']:.2g}, {verdict['violations']} viol."
            for mask, marker, face in ((~censored & half, "o", "none"), (~censored & ~half, "o", color),
                                       (censored, "^", color)):
                ax.scatter(x[mask], y[mask], marker=marker, facecolors=face, edgecolors=color, s=18,
                           label=label if marker == "o" and face == "none" else None)
            lows.append(min(x.min(), y.min()))
            highs.append(max(x.max(), y.max()))
        if lows:
            line = [min(lows), max(highs)]
            ax.plot(line, line, "k:", lw=0.8, label="measured = c × predicted")
            ax.set(xscale="log", yscale="log")
            ax.minorticks_off()
            ax.legend(fontsize=6, loc="upper left")
        ax.set(title=f"{model} / {rule}", xlabel="c × predicted samples", ylabel="measured samples")
    return run.save_figure(fig, "t2_pruning_forms")


def draw_curves(rows: list[dict], config: DictConfig, run):
    """P(success), P(near-optimal) and P(compact) against the samples at the base setting, per cell."""
    fig, cells = panels(config)
    sizes, base = sample_sizes(int(config.max_samples)), base_point(config)
    for ax, model, rule in cells:
        row = next(row for row in rows if row["noise_model"] == model and row["rule"] == rule
                   and (row["n_options"], row["n_eps_planted"], row["sigma"]) == base)
        for criterion, style in zip(CRITERIA, ("k-", "--", ":")):
            ax.plot(sizes, row[f"curve_{criterion}"], style, label=criterion.replace("_", "-"))
        ax.axhline(1 - float(config.delta), color="grey", lw=0.6)
        log_axes(ax, [t for t in (1, 10, 100, 1000, 10000) if t <= sizes[-1]], logy=False)
        ax.set(title=f"{model} / {rule}", xlabel="expert samples", ylabel="P over trials", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6, loc="center right")
    fig.suptitle(f"|Z| = {base[0]}, |Z_eps| = {base[1]}, σ = {base[2]:g}; a dataset that reveals nothing falls back "
                 "to the full set (near-optimal, not compact)", fontsize=9)
    return run.save_figure(fig, "t2_pruning_curves")
