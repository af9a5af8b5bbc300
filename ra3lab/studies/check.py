"""``ra3lab theory check``: T1-T4 as runs, folded into verdicts that could have come out either way.

Each verdict is True, False, or None (not judged: the runs hold no case it applies to):

- ``lemma_3_2_identity``: regret = E[Delta] + RL error to ``RESIDUAL_TOLERANCE`` on every T1 instance;
- ``thm_3_5_noise_free``: with noise-free experts (the theorem's setting), both forms of Theorem 3.5
  (K = |Z| and K = |Z_eps|) hold, by held-out violations, for every pruning rule T2 ran;
- ``thm_3_6_bound_holds``: no value-iteration sweep count (to an eps-optimal policy or to eps value error)
  above Theorem 3.6's bound, in any family;
- ``thm_3_6_ordering``: in every family, sweeps to an eps-optimal policy rank like the bound (Spearman rho at
  least T3's threshold);
- ``t4_abstraction_wins``: at equal primitive budgets, abstraction's regret is below the primitive learner's with
  the confidence interval of the difference above 0.

``contradictions`` lists, with their numbers, every measured case that goes against a theorem or its reading:
a form of Theorem 3.5 violated under some (noise model, rule), a family whose sweeps or learner do not follow
the bound's horizon dependence, a learner that never reached eps, T4 arms or surface cells not separated.
"""

from __future__ import annotations

import time
from pathlib import Path

from ra3lab.config import compose_experiment
from ra3lab.log import say

CHECKS = ("t1_regret_decomposition", "t2_pruning", "t3_horizon", "t4_abstraction")
RESIDUAL_TOLERANCE = 1e-9
NOISE_FREE = "none"


def theory_check(quick: bool = False, force: bool = False) -> dict:
    """Run each theory experiment (cached runs are reused) and report the numbers the theory is judged by."""
    from ra3lab.execute import execute

    summaries = {}
    for name in CHECKS:
        start = time.time()
        say("theory check", f"{name} ...")
        config = compose_experiment(name, quick=quick)
        summaries[name] = execute(name, config, force=force)
        state = "cached" if summaries[name]["cached"] else f"{time.time() - start:.1f} s"
        say("theory check", f"{name} done ({state}): {summaries[name]['run_dir']}")
    folders = sorted({str(Path(p).parent) for s in summaries.values() for p in s["figures"]})
    say("theory check", "figures:" + "".join(f"\n  {folder}" for folder in folders))
    return {"scale": "quick" if quick else "full", **judge(*(summaries[name] for name in CHECKS)),
            "runs": {name: summary["run_dir"] for name, summary in summaries.items()},
            "figures": [path for summary in summaries.values() for path in summary["figures"]]}


def judge(t1: dict, t2: dict, t3: dict, t4: dict) -> dict:
    """The check's report from the four summaries: headline numbers, ``verdicts``, ``contradictions``, ``passed``
    (every judged verdict True)."""
    forms = _forms(t2)
    families = {name: _family(family) for name, family in t3["families"].items()}
    versus = t4["abstraction_vs_primitive"]
    noise_free = [holds for key, group in forms.items() if key.startswith(f"{NOISE_FREE}/")
                  for holds in (form["holds"] for form in group.values())]
    verdicts = {
        "lemma_3_2_identity": t1["lemma_3_2_max_residual"] < RESIDUAL_TOLERANCE,
        "thm_3_5_noise_free": _every(noise_free),
        "thm_3_6_bound_holds": t3["thm_3_6_bound_violations"] == 0,
        "thm_3_6_ordering": _every([family["policy_sweeps"]["ordered_like_bound"] for family in families.values()]),
        "t4_abstraction_wins": versus["verdict"] == "abstraction",
    }
    judged = [value for value in verdicts.values() if value is not None]
    return {
        "lemma_3_2_max_residual": t1["lemma_3_2_max_residual"],
        "lemma_3_2_mc_max_abs_z": t1["mc_max_abs_z"],
        "thm_3_5_forms": forms,
        "thm_3_5_forms_holding": t2["thm_3_5_forms_holding"],
        "thm_3_5_slopes": t2["thm_3_5_slopes"],
        "thm_3_6_bound_violations": t3["thm_3_6_bound_violations"],
        "thm_3_6_families": families,
        "thm_3_6_looseness_median": t3["thm_3_6_looseness_median"],
        "t4_abstraction_vs_primitive": versus,
        "t4_surface_best": t4["surface_best"],
        "t4_empty_fallbacks": t4["empty_fallbacks"],
        "verdicts": verdicts,
        "contradictions": _thm_3_5_contradictions(forms) + _thm_3_6_contradictions(families) + _t4_contradictions(t4),
        "passed": bool(judged) and all(judged),
    }


def _every(values: list) -> bool | None:
    """all(values), or None (not judged) when there are none or one of them could not be judged."""
    return None if not values or None in values else all(values)


def _forms(t2: dict) -> dict:
    """Per "noise/rule", per form: holds, c, violations (held-out + uncoverable fit cells), tightness."""
    return {group: {form: {"holds": verdict["holds"], "c": verdict.get("c"),
                           "violations": verdict.get("violations", 0) + verdict.get("fit_violations", 0),
                           "tightness": verdict.get("tightness")}
                    for form, verdict in by_form.items()}
            for group, by_form in t2["thm_3_5_verdicts"].items()}


def _family(family: dict) -> dict:
    """Per measure of one T3 family: violations, Spearman rho, ordered_like_bound, the slope in the effective
    horizon at fixed tau (with its CI) and grows_with_horizon, censored cells; plus the bound's own slope."""
    keys = ("violations", "spearman", "ordered_like_bound", "slope_horizon", "grows_with_horizon", "censored")
    bound = family["bound_slopes"]["slope_horizon"]
    return {measure: {key: values.get(key) for key in keys} for measure, values in family["measures"].items()} | {
        "bound_slope_horizon": None if bound is None else bound["slope"],
        "looseness_median": family["looseness_median"]}


def _thm_3_5_contradictions(forms: dict) -> list[str]:
    return [f"Thm 3.5 {form} violated under {group} ({verdict['violations']} violations)"
            for group, by_form in forms.items() for form, verdict in by_form.items() if verdict["holds"] is False]


def _slope(fit: dict | None) -> str:
    return "n/a" if fit is None else f"{fit['slope']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}]"


def _thm_3_6_contradictions(families: dict) -> list[str]:
    found = []
    for name, family in families.items():
        bound = family["bound_slope_horizon"]
        for measure in ("policy_sweeps", "value_sweeps", "learner_samples", "learner_decisions"):
            values = family.get(measure)
            if values is None:
                continue
            if values["grows_with_horizon"] is False:
                found.append(f"Thm 3.6 {name}: {measure} do not grow with 1/(1 - gamma_bar) at fixed tau (slope "
                             f"{_slope(values['slope_horizon'])}; the bound's {bound:.2f})")
            if values["ordered_like_bound"] is False:
                found.append(f"Thm 3.6 {name}: {measure} do not rank like the bound (rho {values['spearman']:.2f})")
            if values["censored"]:
                found.append(f"Thm 3.6 {name}: {measure} censored in {values['censored']} cells (the learner never "
                             f"reached eps)")
    return found


def _t4_contradictions(t4: dict) -> list[str]:
    versus, best = t4["abstraction_vs_primitive"], t4["surface_best"]
    found = []
    if versus["verdict"] != "abstraction":
        found.append(f"T4: abstraction does not beat primitives at |A| = {versus['n_actions']}, {versus['n']} expert "
                     f"samples, budget {versus['budget']} (difference {versus['difference']:.3f} "
                     f"[{versus['low']:.3f}, {versus['high']:.3f}]: {versus['verdict']})")
    if best.get("separated") is False:
        found.append(f"T4: the surface's best cell (k = {best['budget']}, c = {best['penalty']:g}) is tied with "
                     f"{best['n_tied']} other cells")
    return found
