"""RLVR from the base, NTP and RA3 checkpoints of the CodeWorld study: which converges faster and higher?

GRPO (TRL) with the sandboxed unit-test reward runs from every init for every seed on CodeWorld's
train-split tasks, each rollout within its task's budget (truncated rollouts are kept out of the loss).
Along the way the held-out tasks are evaluated as ``eval`` says (by default n = 8 samples per task at
temperature 0.8, so that a model may think as it writes): pass@1 is the curve, with the thought rate and
the truncation rate of every evaluation next to it in ``curves.csv``. The summary holds, per init, the
area under the held-out pass@1 curve, the steps to a threshold and the final pass@1, each with a
stratified-bootstrap 95% CI over seeds (IQM, as rliable) and its minimum detectable difference, the
final thought and truncation rates (mean over seeds), and the probability that RA3 improves on NTP;
``warnings`` says where a truncation rate above 5% makes the budget part of the result.

The study is a composition of stages (:mod:`ra3lab.studies.stages`): one ``rlvr`` run per init and seed,
whose config is the ``midtrain`` experiment under ``midtraining.overrides`` (its quick profile with
``midtraining.quick``) with this study's ``rlvr``, ``eval`` (as ``rlvr_eval``), ``tasks`` (drawn with ``seed``)
and ``workers``; each rlvr run needs its arm's mid-training run and that the pre-trained base, each reused
when it exists.
"""

from __future__ import annotations

import math

import pandas as pd
from omegaconf import DictConfig

from ra3lab.config import compose_experiment
from ra3lab.errors import check
from ra3lab.evaluation.solve import TRUNCATION_LIMIT
from ra3lab.plots import style
from ra3lab.plots.curves import convergence_figure
from ra3lab.plots.tables import convergence_table, run_scores, to_markdown
from ra3lab.ra3.arms import Arm
from ra3lab.stages import upstream_summary
from ra3lab.stats import probability_of_improvement_ci
from ra3lab.studies.stages.midtrain import check_arm
from ra3lab.studies.stages.rlvr import RATES, block, check_rlvr

MIDTRAINING = "midtrain"     # the stage experiment whose arms are the inits


def rlvr_config(config: DictConfig, init: str, seed: int) -> DictConfig:
    """The ``rlvr`` stage config of one init and RLVR seed."""
    from ra3lab.studies.stages import as_stage

    spec = config.midtraining
    midtraining = compose_experiment(MIDTRAINING, [*spec.overrides, f"arm={init}"], quick=spec.quick)
    return as_stage(midtraining, "rlvr", tasks={**block(config, "tasks"), "seed": int(config.seed)},
                    rlvr={**block(config, "rlvr"), "seed": seed}, rlvr_eval=block(config, "eval"),
                    workers=config.workers)


def validate(config: DictConfig) -> None:
    check(0.0 <= config.threshold <= 1.0, "threshold", config.threshold, "a pass@1 threshold must lie in [0, 1]")
    check(len(config.seeds) >= 1, "seeds", list(config.seeds), "give at least one seed")
    for init in config.inits:
        check_arm(init, "inits")
    check_rlvr(config, {**block(config, "rlvr"), "seed": 0}, block(config, "eval"))


def upstream(config: DictConfig) -> dict:
    """One ``rlvr`` run per init and seed, role ``<init>_seed<s>``."""
    return {f"{init}_seed{s}": ("rlvr", rlvr_config(config, init, int(s)))
            for init in config.inits for s in config.seeds}


def run(config: DictConfig, run) -> dict:
    seed = int(config.seed)
    rows = []
    for init in config.inits:
        for s in config.seeds:
            result = upstream_summary(config, f"{init}_seed{s}")
            curves = {key: result[key] for key in ("curve_steps", "curve", *RATES)}
            rows.append({"init": init, "seed": int(s), **curves})
    table = pd.DataFrame([{"init": row["init"], "seed": row["seed"], "task_set": "codeworld", "step": step,
                           "value": row["curve"][i], **{name: row[name][i] for name in RATES}}
                          for row in rows for i, step in enumerate(row["curve_steps"])])
    table.to_csv(run.path / "curves.csv", index=False)
    summary_table = convergence_table(table, config.threshold, reps=config.reps, rng=seed)
    (run.path / "convergence.md").write_text(to_markdown(summary_table))
    poi = None
    ra3 = next((init for init in config.inits if Arm.parse(init, "inits").kind == "ra3"), None)
    if "ntp" in config.inits and ra3 is not None:
        point, low, high = probability_of_improvement_ci(*run_scores(table, ra3, "ntp"), reps=config.reps, rng=seed)
        poi = {"x": ra3, "y": "ntp", "point": point, "low": low, "high": high}
    fig = convergence_figure(table, "held-out pass@1", threshold=config.threshold, rng=seed)
    figures = style.save(fig, run.path / "figures", "codeworld_rlvr")

    def finite(value):
        return None if isinstance(value, float) and not math.isfinite(value) else value

    final = table[table["step"] == table.groupby(["init", "seed"])["step"].transform("max")]
    rates = final.groupby("init")[list(RATES)].mean()
    per_init = {init: {**{key: finite(value) for key, value in row.items()}, **rates.loc[init].to_dict()}
                for init, row in summary_table.to_dict(orient="index").items()}
    return {"inits": per_init, "probability_of_improvement": poi, "threshold": config.threshold,
            "warnings": truncation_warnings(table), "curves": str(run.path / "curves.csv"),
            "figures": [str(path) for path in figures]}


def truncation_warnings(table: pd.DataFrame) -> list[str]:
    """One line per init whose held-out truncation rate exceeds ``TRUNCATION_LIMIT`` at some evaluation."""
    lines = []
    for init, rows in table.groupby("init", sort=False):
        worst = rows.loc[rows["truncation_rate"].idxmax()]
        if worst["truncation_rate"] > TRUNCATION_LIMIT:
            lines.append(f"{init}: held-out truncation rate {worst['truncation_rate']:.1%} at step {worst['step']} "
                         f"(seed {worst['seed']}) exceeds {TRUNCATION_LIMIT:.0%}: completions cut off before their "
                         "body ended let the budget shape the pass rates; raise eval.thought_tokens or set "
                         "eval.max_new_tokens")
    return lines
