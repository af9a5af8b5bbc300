"""T2 — Theorem 3.5: how many expert samples make the pruned set eps-good with probability 1 - delta?

The theorem says |D_E| = Theta(K log(|Z|/delta) / sigma), with K = |Z| in one reading and
K = |Z_eps| in the other. Three knobs are varied one at a time around a base point: |Z| (distractor
options added, |Z_eps| fixed), |Z_eps| (goals spread over more corridors, |Z| fixed) and sigma (how
often an expert reveals its decision). For each setting the smallest |D_E| reaching
E[Delta(M, Z_hat)] <= eps in at least 1 - delta of the trials is measured exactly; log-log slopes
with confidence intervals are set against the slopes each form of the theorem predicts.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from ra3lab.errors import check
from ra3lab.mdp.pruning import PRUNING_RULES, samples_to_eps, z_eps
from ra3lab.studies.common import figure, generator, log_axes, make_family
from ra3lab.theory.bounds import thm_3_5_samples_eps, thm_3_5_samples_full
from ra3lab.theory.fit import loglog_slope

KNOBS = {"n_options": "|Z|", "n_eps": "|Z_eps|", "sigma": "σ"}


def validate(config: DictConfig) -> None:
    check(config.eps > 0, "eps", config.eps, "must be > 0")
    check(0 < config.delta < 1, "delta", config.delta, "must lie in (0, 1)")
    check(config.trials >= 2, "trials", config.trials, "need at least 2 trials per sample size")
    check(config.rule in PRUNING_RULES, "rule", config.rule, f"choose one of {', '.join(PRUNING_RULES)}")
    check(config.max_samples >= 2, "max_samples", config.max_samples, "must be >= 2")
    for key in ("n_distractors", "n_goal_corridors", "sigma"):
        check(len(config.vary[key]) >= 3, f"vary.{key}", list(config.vary[key]), "need at least 3 values to fit a slope")
    check(all(0 < s <= 1 for s in config.vary.sigma), "vary.sigma", list(config.vary.sigma), "every sigma must lie in (0, 1]")
    check(all(d >= 0 for d in config.vary.n_distractors), "vary.n_distractors", list(config.vary.n_distractors),
          "distractor counts must be >= 0")
    make_family(config.env, n_tasks=1)


def sample_sizes(max_samples: int, ratio: float = 1.15) -> list[int]:
    """A geometric grid 1, 2, ..., max_samples fine enough to read a required size off."""
    return sorted({round(ratio**k) for k in range(int(np.log(max_samples) / np.log(ratio)) + 1)} | {max_samples})


def settings(config: DictConfig):
    """(knob, value, family overrides, sigma) for each one-at-a-time variation of the base point."""
    base = config.base
    for n_distractors in config.vary.n_distractors:
        yield "n_options", {"n_distractors": int(n_distractors), "n_goal_corridors": int(base.n_goal_corridors)}, float(base.sigma)
    for n_goals in config.vary.n_goal_corridors:
        yield "n_eps", {"n_distractors": int(base.n_distractors), "n_goal_corridors": int(n_goals)}, float(base.sigma)
    for sigma in config.vary.sigma:
        yield "sigma", {"n_distractors": int(base.n_distractors), "n_goal_corridors": int(base.n_goal_corridors)}, float(sigma)


def measure(config: DictConfig, step: int, knob: str, overrides: dict, sigma: float) -> dict:
    family = make_family(config.env, **overrides)
    smdp = family.abstract
    target = z_eps(smdp, float(config.eps), exact_max_options=int(config.exact_max_options))
    result = samples_to_eps(
        smdp, float(config.eps), float(config.delta), sigma, sample_sizes(int(config.max_samples)),
        int(config.trials), rule=config.rule, generator=generator(int(config.seed) * 100 + step),
        terminal=family.meta.get("terminal"), **dict(config.rule_kwargs),
    )
    n_options, n_eps = len(family.options), int(target.size)
    value = {"n_options": n_options, "n_eps": n_eps, "sigma": sigma}[knob]
    return {
        "knob": knob, "x": value, "n_options": n_options, "n_eps": n_eps, "z_eps_exact": bool(target.exact),
        "sigma": sigma, "n_required": result["n_required"],
        "predicted_full": thm_3_5_samples_full(n_options, sigma, float(config.delta)),
        "predicted_eps": thm_3_5_samples_eps(n_eps, n_options, sigma, float(config.delta)),
    }


def compare(rows: list[dict]) -> dict:
    """Per knob: measured slope with CI next to each form's predicted slope over the same settings."""
    slopes = {}
    for knob in KNOBS:
        sel = [row for row in rows if row["knob"] == knob and row["n_required"] is not None]
        x = np.array([row["x"] for row in sel], dtype=float)
        if len(sel) < 3 or np.unique(x).size < 2:
            slopes[knob] = {"slope": None, "note": "fewer than 3 settings reached eps; raise max_samples"}
            continue
        measured = loglog_slope(x, [row["n_required"] for row in sel])
        slopes[knob] = {**measured,
                        "predicted_full": loglog_slope(x, [row["predicted_full"] for row in sel])["slope"],
                        "predicted_eps": loglog_slope(x, [row["predicted_eps"] for row in sel])["slope"]}
    return slopes


SLOPE_RESOLUTION = 0.05   # the least CI half-width: required sizes are read off a grid 15% apart


def better_form(slopes: dict) -> tuple[str, dict]:
    """The form whose predicted slopes sit closer to the measured ones: the sum over knobs of squared
    differences in units of the CI half-width (at least SLOPE_RESOLUTION); "undetermined" without slopes."""
    if all(fit.get("slope") is None for fit in slopes.values()):
        return "undetermined", {}
    distance = {}
    for form in ("full", "eps"):
        total = 0.0
        for fit in slopes.values():
            if fit.get("slope") is None:
                continue
            half_width = max((fit["high"] - fit["low"]) / 2, SLOPE_RESOLUTION)
            total += ((fit["slope"] - fit[f"predicted_{form}"]) / half_width) ** 2
        distance[form] = total
    name = {"full": "K=|Z|", "eps": "K=|Z_eps|"}
    return name[min(distance, key=distance.get)], {name[form]: value for form, value in distance.items()}


def run(config: DictConfig, run) -> dict:
    rows = run.map(lambda step, setting: measure(config, step, *setting), settings(config), "T2 settings", "theory/t2")
    slopes = compare(rows)
    form, distance = better_form(slopes)
    figures = draw(rows, slopes, run)
    return {
        "thm_3_5_slopes": slopes,
        "thm_3_5_better_form": form,
        "thm_3_5_form_distance": distance,
        "z_eps_all_exact": all(row["z_eps_exact"] for row in rows),
        "settings": rows,
        "figures": [str(path) for path in figures],
    }


def draw(rows: list[dict], slopes: dict, run):
    fig, axes = figure(3, width=10.0, height=3.2)
    for ax, (knob, label) in zip(axes, KNOBS.items()):
        sel = [row for row in rows if row["knob"] == knob]
        x = np.array([row["x"] for row in sel], dtype=float)
        measured = np.array([np.nan if row["n_required"] is None else row["n_required"] for row in sel], dtype=float)
        full = np.array([row["predicted_full"] for row in sel])
        eps = np.array([row["predicted_eps"] for row in sel])
        scale_full, scale_eps = (np.nanmedian(measured / full), np.nanmedian(measured / eps)) if np.isfinite(measured).any() else (1, 1)
        ax.plot(x, measured, "ko-", label="measured")
        ax.plot(x, full * scale_full, "--", label="K=|Z| (scaled)")
        ax.plot(x, eps * scale_eps, ":", label="K=|Z_eps| (scaled)")
        fit = slopes[knob]
        slope = "n/a" if fit.get("slope") is None else f"{fit['slope']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}]"
        log_axes(ax, sorted(set(x.tolist())))
        ax.set(xlabel=label, ylabel="expert samples needed", title=f"slope {slope}")
        ax.legend(fontsize=7)
    return run.save_figure(fig, "t2_pruning_samples")
