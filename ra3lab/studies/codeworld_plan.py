"""CodeWorld-Plan, theory next to practice: the pruning predictions against RLVR from each mid-training arm.

Before any RL, from the mid-training corpus's skill counts and the world's knobs only
(:mod:`ra3lab.studies.predictions`): the kept skills Z_hat, the predicted initial success P0 = |Z_hat|^-H of every
arm mid-trained on the corpus (|Z|^-H for the base, which has seen every skill) and the predicted steps to the
threshold S* = 1 / (P0 x G x B) + L, the lock-in constant L fitted on the NTP arm alone and tested on the others.

Measured, on the held-out families (whose plans no corpus shows; RLVR trains on them with other inputs): P0 as each
arm's sampled pass@1 before RL (the ``evaluate`` stage), with a Wilson interval over its samples; S* as the first
RLVR step at which the IQM over seeds of the held-out pass@1 curve reaches the absolute threshold, with a
stratified-bootstrap interval over seeds, and also against a threshold relative to each arm's own start. Each
prediction is ``holds``, ``contradicted`` or ``undecided`` (:func:`~ra3lab.studies.predictions.verdict`).

Three gates come first (:mod:`ra3lab.studies.gates`): execution (the base writes the skills when the steps are
given), learning (GRPO from NTP raises the train pass rate) and thinking (the RA3 arm writes thoughts). A failed
execution or learning gate is reported with its message and no prediction is judged; a failed thinking gate is a
note: RA3 is NTP by another name in this run.

The study is a composition of stages (:mod:`ra3lab.studies.stages`): the base, one ``midtrain`` and one
``evaluate`` run per arm, and one ``rlvr`` run per arm and seed, each reused when it exists.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict

import pandas as pd
from omegaconf import DictConfig

from ra3lab.errors import check, check_choice
from ra3lab.mdp.pruning import PRUNING_RULES
from ra3lab.plots import style
from ra3lab.plots.curves import convergence_figure
from ra3lab.plots.tables import convergence_table, run_scores, to_markdown
from ra3lab.plots.theory import theory_figure
from ra3lab.ra3.arms import Arm
from ra3lab.stages import upstream_summary
from ra3lab.stats import binomial_ci, probability_of_improvement_ci
from ra3lab.studies import gates, predictions
from ra3lab.studies.codeworld_ra3 import validate_pipeline
from ra3lab.studies.common import make_env
from ra3lab.studies.midtraining import arms_of
from ra3lab.studies.stages import arm_stages, as_stage
from ra3lab.studies.stages.rlvr import block, check_rlvr
from ra3lab.studies.stages.sources import PlanSource, source_of

CONFIDENCE = 0.95
MEDIATORS = ("coherence", "z_eps_mass", "train_plan_share", "target_plan_share", "plans")


def rl_role(arm: Arm, seed: int) -> str:
    return f"rl_{arm}_seed{seed}"


def validate(config: DictConfig) -> None:
    check(isinstance(source_of(config), PlanSource), "env", config.env.get("_target_"),
          "this study runs on CodeWorld-Plan: pass env=codeworld_plan")
    validate_pipeline(config)
    check(len(config.seeds) >= 1 and all(isinstance(s, int) for s in config.seeds), "seeds", list(config.seeds),
          "give at least one integer RLVR seed")
    check("ntp" in config.references, "references", list(config.references),
          "the lock-in constant of S* is fitted on the NTP arm: keep ntp in references")
    if config.rl_arms is not None:
        names = [arm.name for arm in arms_of(config)]
        for name in config.rl_arms:
            check(name in names, "rl_arms", name, f"RLVR runs from an arm of this study: choose from {names}")
        check("ntp" in config.rl_arms, "rl_arms", list(config.rl_arms), "keep ntp: S*'s lock-in is fitted on it")
    for key in ("absolute", "relative"):
        check(0 < config.threshold[key] <= 1, f"threshold.{key}", config.threshold[key], "must lie in (0, 1]")
    check_choice("prune.rule", config.prune.rule, PRUNING_RULES)
    check_rlvr(config, block(config, "rlvr"), block(config, "rlvr_eval"))
    world = make_env(config.env)
    check(config.tasks.train >= len(world.families("heldout")), "tasks.train", config.tasks.train,
          f"RLVR trains on the {len(world.families('heldout'))} held-out families: give at least one task each")


def rl_arms(config: DictConfig) -> list[Arm]:
    """The arms RLVR runs from: ``rl_arms`` (null: every arm)."""
    arms = arms_of(config)
    return arms if config.rl_arms is None else [arm for arm in arms if arm.name in config.rl_arms]


def upstream(config: DictConfig) -> dict:
    """Per arm, its ``midtrain`` and ``evaluate`` runs, and per arm of ``rl_arms`` one ``rlvr`` run per seed
    (``rl_<arm>_seed<s>``)."""
    found = arm_stages(config)
    for arm in rl_arms(config):
        for seed in config.seeds:
            found[rl_role(arm, int(seed))] = ("rlvr", as_stage(config, "rlvr", arm=arm.name,
                                                               **{"rlvr.seed": int(seed)}))
    return found


def measured_p0(evaluation: dict, tasks: int, samples: int) -> dict:
    """An arm's sampled pass@1 before RL with a Wilson interval over its ``tasks`` x ``samples`` completions (which
    treats the samples of a task as independent: the interval is optimistic when tasks differ)."""
    trials = tasks * samples
    point, low, high = binomial_ci(round(evaluation["pass@1"] * trials), trials, CONFIDENCE)
    return {"point": point, "low": low, "high": high, "trials": trials}


def curves_table(config: DictConfig) -> pd.DataFrame:
    """The long table of held-out pass@1 curves (init, seed, task_set, step, value) of every RLVR run."""
    rows = []
    for arm in rl_arms(config):
        for seed in config.seeds:
            result = upstream_summary(config, rl_role(arm, int(seed)))
            rows += [{"init": arm.name, "seed": int(seed), "task_set": "codeworld_plan", "step": step, "value": value}
                     for step, value in zip(result["curve_steps"], result["curve"], strict=True)]
    return pd.DataFrame(rows)


def steps_to(table: pd.DataFrame, arm: str, threshold: float, config: DictConfig) -> dict:
    """S* of one arm: the steps to ``threshold`` with its interval (inf: not within the budget)."""
    row = convergence_table(table, min(threshold, 1.0), reps=config.reps, rng=int(config.seed), inits=[arm]).iloc[0]
    return {"threshold": min(threshold, 1.0), "point": float(row["steps_to_threshold"]),
            "low": float(row["steps_to_threshold_low"]), "high": float(row["steps_to_threshold_high"])}


def predicted_p0(pruning: dict, arm: Arm) -> tuple[float, float]:
    """(an arm's predicted P0, the rival prediction): |Z|^-H for the base, which has seen every skill, and
    |Z_hat|^-H for an arm mid-trained on the corpus; the rival is the other one."""
    unpruned, pruned = pruning["P0_unpruned"], pruning["P0_pruned"]
    return (unpruned, pruned) if arm.kind == "base" else (pruned, unpruned)


def judge(config: DictConfig, arms: list[Arm], pruning: dict, measured: dict, reached: dict) -> dict:
    """The verdicts: P0 per arm against its rival, and S* per arm RLVR ran from (``reached``) but NTP, on which the
    lock-in constant is fitted (``lock_in``; nan, and every S* undecided, where NTP never reached the threshold)."""
    group, prompts = int(config.rlvr.group_size), int(config.rlvr.prompts_per_step)
    ntp, _ = predicted_p0(pruning, Arm.parse("ntp"))
    lock = predictions.lock_in(reached["ntp"]["point"], ntp, group, prompts)
    lock = lock if math.isfinite(lock) else math.nan         # NTP never reached the threshold: nothing is fitted
    out: dict = {"lock_in": lock, "P0": {}, "S*": {}}
    for arm in arms:
        p0, rival = predicted_p0(pruning, arm)
        m = measured[arm.name]
        out["P0"][arm.name] = {"predicted": p0, "rival": rival, "measured": m["point"], "low": m["low"],
                               "high": m["high"], "verdict": predictions.verdict(p0, m["low"], m["high"], rival)}
        if arm.name != "ntp" and arm.name in reached:
            steps = predictions.steps_to_first_success(p0, group, prompts) + lock
            r = reached[arm.name]
            out["S*"][arm.name] = {"predicted": steps, "measured": r["point"], "low": r["low"], "high": r["high"],
                                   "verdict": predictions.verdict(steps, r["low"], r["high"])}
    return out


def run(config: DictConfig, run) -> dict:
    source, world = PlanSource(config), make_env(config.env)
    arms = arms_of(config)
    pruning = predictions.pruning(world, source.programs("midtrain"), config.prune.rule,
                                  float(config.prune.threshold), config.prune.k)
    evaluations = {arm.name: upstream_summary(config, f"eval_{arm}")["evaluation"] for arm in arms}
    ra3 = next((arm for arm in arms if arm.kind == "ra3"), None)
    ntp_curves = [upstream_summary(config, rl_role(Arm.parse("ntp"), int(seed)))["curve"] for seed in config.seeds]
    checked = [gates.execution(evaluations["base"]), gates.learning(ntp_curves)]
    checked += [gates.thinking(evaluations[ra3.name])] if ra3 else []
    tasks = len(source.tasks()[0])
    measured = {name: measured_p0(evaluation, tasks, int(config.eval.n)) for name, evaluation in evaluations.items()}

    table = curves_table(config)
    table.to_csv(run.path / "curves.csv", index=False)
    starts = table[table["step"] == 0].groupby("init")["value"].mean()
    trained = rl_arms(config)
    absolute = {arm.name: steps_to(table, arm.name, config.threshold.absolute, config) for arm in trained}
    relative = {arm.name: steps_to(table, arm.name, starts[arm.name] + config.threshold.relative, config)
                for arm in trained}
    failed = [gate for gate in checked if not gate.passed]
    passed = not any(gate.stops for gate in failed)
    judged = judge(config, arms, pruning, measured, absolute)
    poi = None
    if ra3 is not None and ra3 in trained:
        point, low, high = probability_of_improvement_ci(*run_scores(table, ra3.name, "ntp", "auc"), reps=config.reps,
                                                         rng=int(config.seed))
        poi = {"x": ra3.name, "y": "ntp", "measure": "auc", "point": point, "low": low, "high": high}
    summary_table = convergence_table(table, config.threshold.absolute, reps=config.reps, rng=int(config.seed))
    (run.path / "convergence.md").write_text(to_markdown(summary_table))
    figures = style.save(convergence_figure(table, "held-out pass@1", threshold=config.threshold.absolute,
                                            rng=int(config.seed)), run.path / "figures", "codeworld_plan_rlvr")
    figures += style.save(theory_figure(panels(judged, int(config.rlvr.steps))), run.path / "figures",
                          "codeworld_plan_predictions")
    return {"world": world.quantities, "predictions": pruning,
            "rollouts_per_step": int(config.rlvr.group_size) * int(config.rlvr.prompts_per_step),
            "rlvr_steps": int(config.rlvr.steps), "threshold": dict(config.threshold),
            "gates": {gate.name: asdict(gate) for gate in checked}, "gates_passed": passed,
            "stopped": None if passed else "; ".join(gate.message for gate in failed if gate.stops),
            "notes": [gate.message for gate in failed if not gate.stops],
            "P0_measured": measured, "evaluations": {name: {key: evaluation.get(key) for key in SHOWN}
                                                     for name, evaluation in evaluations.items()},
            "steps_to_threshold": {"absolute": absolute, "relative": relative},
            "lock_in": judged["lock_in"], "P0": judged["P0"], "S*": judged["S*"],
            "verdicts": verdicts(judged) if passed else None, "probability_of_improvement": poi,
            "auc": {arm: finite(row["auc"]) for arm, row in summary_table.to_dict(orient="index").items()},
            "figures": [str(path) for path in figures]}


def verdicts(judged: dict) -> dict[str, str]:
    """``P0/<arm>`` and ``S*/<arm>``: each prediction's verdict."""
    return {f"{kind}/{arm}": row["verdict"] for kind in ("P0", "S*") for arm, row in judged[kind].items()}


def at_budget(value: float | None, budget: int) -> float:
    """A value for a figure clipped to the RLVR budget: never reached (None in a summary, inf) is drawn at the
    budget; nan (nothing to draw) stays nan."""
    return float(budget) if value is None or value == math.inf else min(float(value), float(budget))


def interval(row: dict) -> tuple[float, float, float]:
    """(point, low, high) of an S* row of a summary, where None (never reached) reads as inf."""
    point, low, high = (math.inf if row[key] is None else float(row[key]) for key in ("point", "low", "high"))
    return point, low, high


def sweep_lock_in(cells: list[dict]) -> float:
    """The lock-in constant L fitted once on NTP over the summaries ``cells`` of a sweep: the median of its measured
    S* less 1 / (P0 G B) where it reached the threshold (nan where it never did), so that NTP's cells test the
    form too."""
    offsets = [interval(cell["steps_to_threshold"]["absolute"]["ntp"])[0]
               - predictions.steps_to_first_success(cell["P0"]["ntp"]["predicted"], cell["rollouts_per_step"], 1)
               for cell in cells if "ntp" in cell["steps_to_threshold"]["absolute"]]
    finite = [offset for offset in offsets if math.isfinite(offset)]
    return float(statistics.median(finite)) if finite else math.nan


def predicted_steps(cell: dict, arm: str, lock: float) -> float:
    """S* = 1 / (P0 G B) + L of an arm in a summary ``cell``, P0 its prediction |Z_hat|^-H (inf where P0 = 0)."""
    return predictions.steps_to_first_success(cell["P0"][arm]["predicted"], cell["rollouts_per_step"], 1) + lock


def panels(judged: dict, budget: int) -> list[dict]:
    """The figure's panels (:func:`~ra3lab.plots.theory.theory_panel`) from the study's ``P0`` and ``S*`` rows (or
    its summary's, where inf is None): predicted next to measured; a threshold not reached within the budget
    is drawn at the budget, and S* is not predicted where the lock-in constant could not be fitted."""
    fitted = judged["lock_in"] is not None and math.isfinite(judged["lock_in"])
    out = []
    for kind, ylabel in (("P0", "pass@1 before RL"), ("S*", "RLVR steps to threshold")):
        rows = judged[kind]
        if not rows:
            continue
        clip = [[at_budget(row[key], budget) for key in ("measured", "low", "high")] for row in rows.values()]
        predicted = [math.nan if kind == "S*" and not fitted else at_budget(row["predicted"], budget)
                     for row in rows.values()]
        out.append({"name": f"{kind}: theory vs practice", "categories": [style.label(arm) for arm in rows],
                    "measured": [c[0] for c in clip], "low": [c[1] for c in clip], "high": [c[2] for c in clip],
                    "predicted": {"predicted" if kind == "P0" or fitted else "predicted (no lock-in: NTP never "
                                  "reached the threshold)": predicted}, "ylabel": ylabel})
    return out


SHOWN = ("pass@1", "pass@1/steps", "thought_rate", "truncation_rate", "nll_plain", "nll_elbo", *MEDIATORS)


def finite(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value
