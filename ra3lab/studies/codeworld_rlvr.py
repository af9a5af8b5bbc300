"""RLVR from the base, NTP and RA3 checkpoints of the CodeWorld study: which converges faster and higher?

GRPO (TRL) with the sandboxed unit-test reward runs from every init for every seed on CodeWorld's
train-split tasks, each rollout within its task's budget (truncated rollouts are kept out of the loss).
Along the way the held-out tasks are evaluated as ``eval`` says (by default n = 8 samples per task at
temperature 0.8, so that a model may think as it writes): pass@1 is the curve, with the thought rate and
the truncation rate of every evaluation next to it in ``curves.csv``. The summary holds, per init, the
area under the held-out pass@1 curve, the steps to a threshold and the final pass@1, each with a
stratified-bootstrap 95% CI over seeds (IQM, as rliable) and its minimum detectable difference, the
final thought and truncation rates (mean over seeds), and the probability that RA3 improves on NTP;
``warnings`` says where a truncation rate above 5% makes the budget part of the result. The
mid-training run is reused when it exists and run first when it does not.
"""

from __future__ import annotations

import math
from typing import Any, cast

import pandas as pd
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ra3lab.config import compose_experiment
from ra3lab.errors import check
from ra3lab.evaluation import EvalConfig, SandboxPool, named_tasks
from ra3lab.evaluation.solve import TRUNCATION_LIMIT
from ra3lab.log import say
from ra3lab.plots import style
from ra3lab.plots.curves import convergence_figure
from ra3lab.plots.tables import convergence_table, run_scores, to_markdown
from ra3lab.ra3.arms import Arm
from ra3lab.rlvr import RLVRConfig, train_rlvr
from ra3lab.rlvr.grpo import check_tasks
from ra3lab.stats import probability_of_improvement_ci
from ra3lab.studies.midtraining import arms_of

METRIC = "eval/pass@1/heldout"
# curves.csv columns next to ``value`` (held-out pass@1), each from the same evaluation
RATES = {"thought_rate": "eval/thought_rate/heldout", "truncation_rate": "eval/truncation_rate/heldout"}


def midtraining_config(config: DictConfig) -> DictConfig:
    spec = config.midtraining
    return compose_experiment(spec.experiment, list(spec.overrides), quick=spec.quick)


def rlvr_config(config: DictConfig, seed: int) -> RLVRConfig:
    return RLVRConfig(**_block(config.rlvr), seed=seed)


def eval_config(config: DictConfig) -> EvalConfig:
    """The ``eval:`` block as an EvalConfig (ConfigError on a bad value, fields ``eval.<key>``)."""
    return EvalConfig(**_block(config.eval))


def _block(block: DictConfig) -> dict[str, Any]:
    """A mapping block of the config (``rlvr:``, ``eval:``) as a plain dict of keyword arguments."""
    return cast(dict[str, Any], OmegaConf.to_container(block))


def task_file(path: str | None, field: str) -> list[dict] | None:
    """The tasks of ``tasks.<field>`` when set (humaneval or a JSONL file), else None (CodeWorld's split)."""
    return None if path is None else named_tasks(path, f"tasks.{field}")


def validate(config: DictConfig) -> None:
    from ra3lab.execute import prepare

    check(0.0 <= config.threshold <= 1.0, "threshold", config.threshold, "a pass@1 threshold must lie in [0, 1]")
    check(len(config.seeds) >= 1, "seeds", list(config.seeds), "give at least one seed")
    midtraining = midtraining_config(config)
    prepare(config.midtraining.experiment, midtraining)
    arms = {arm.name for arm in arms_of(midtraining)}
    for init in config.inits:
        check(init in arms, "inits", init, f"arms of {config.midtraining.experiment}: {', '.join(sorted(arms))}")
    rlvr_config(config, 0)                      # RLVRConfig validates its fields
    evaluation = eval_config(config)            # and EvalConfig its own
    # a task file with missing fields, or without reference bodies where a budget derives from them, fails here
    for field, key, budget in (("train_file", "rlvr.max_new_tokens", config.rlvr.max_new_tokens),
                               ("heldout_file", "eval.max_new_tokens", evaluation.max_new_tokens)):
        tasks = task_file(config.tasks[field], field)
        if tasks is not None:
            check_tasks(f"tasks.{field}", tasks, None if budget else key)


def checkpoints(config: DictConfig) -> dict:
    """init -> checkpoint directory, running the mid-training study first when it is not done."""
    from ra3lab.execute import execute, prepare

    midtraining = midtraining_config(config)
    run = prepare(config.midtraining.experiment, midtraining)
    if not run.done:
        say("codeworld_rlvr", f"mid-training checkpoints missing: running {config.midtraining.experiment} first")
        execute(config.midtraining.experiment, midtraining)
    return {init: Arm.parse(init, "inits").model_dir(run.path, midtraining.midtrain.rounds) for init in config.inits}


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    inits = checkpoints(config)
    world = instantiate(midtraining_config(config).env)
    seed = int(config.seed)
    evaluation = eval_config(config)
    train = (task_file(config.tasks.train_file, "train_file")
             or world.tasks(config.tasks.train, "train", seed=seed * 10 + 7))
    heldout = (task_file(config.tasks.heldout_file, "heldout_file")
               or world.tasks(config.tasks.heldout, "heldout", seed=seed * 10 + 8))
    items = [(init, s) for init in config.inits for s in config.seeds]
    shown = ("rlvr/reward_mean", "rlvr/truncated_fraction", METRIC, *RATES.values())

    with SandboxPool(workers=config.workers) as pool:
        def one(index: int, item) -> dict:
            init, s = item
            say("codeworld_rlvr", f"RLVR from {init}, seed {s} ({index + 1}/{len(items)})")
            result = train_rlvr(inits[init], train, heldout, rlvr_config(config, int(s)),
                                run.path / "rlvr" / f"{init}_seed{s}", pool, eval=evaluation,
                                log=lambda step, metrics: say("codeworld_rlvr", f"{init} seed {s} step {step}: "
                                                              + ", ".join(f"{k.split('/')[1]} {v:.3f}"
                                                                          for k, v in metrics.items()
                                                                          if isinstance(v, float) and k in shown)))
            evaluated = [row for row in result["history"] if METRIC in row]
            return {"init": init, "seed": int(s), "final": evaluated[-1][METRIC],
                    "curve_steps": [row["step"] for row in evaluated], "curve": [row[METRIC] for row in evaluated],
                    **{name: [row[key] for row in evaluated] for name, key in RATES.items()}}

        rows = run.map(one, items, "RLVR runs", "rlvr")
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
