"""RLVR from the base, NTP and RA3 checkpoints of the CodeWorld study: which converges faster and higher?

GRPO (TRL) with the sandboxed unit-test reward runs from every init for every seed on CodeWorld's
train-split tasks; held-out pass@1 is evaluated along the way. The summary holds, per init, the area
under the held-out pass@1 curve, the steps to a threshold and the final pass@1, each with a
stratified-bootstrap 95% CI over seeds (IQM, as rliable), and the probability that RA3 improves on
NTP. The mid-training run is reused when it exists and run first when it does not.
"""

from __future__ import annotations

import math

import pandas as pd
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ra3lab.config import compose_experiment
from ra3lab.errors import check
from ra3lab.evaluation import SandboxPool, named_tasks
from ra3lab.plots import style
from ra3lab.plots.curves import convergence_figure
from ra3lab.plots.tables import convergence_table, probability_of_improvement, to_markdown
from ra3lab.rlvr import RLVRConfig, train_rlvr
from ra3lab.studies.midtraining import say

METRIC = "eval/pass@1/heldout"


def midtraining_config(config: DictConfig) -> DictConfig:
    spec = config.midtraining
    return compose_experiment(spec.experiment, list(spec.overrides), quick=spec.quick)


def rlvr_config(config: DictConfig, seed: int) -> RLVRConfig:
    return RLVRConfig(**OmegaConf.to_container(config.rlvr), seed=seed)


def task_file(path: str | None, field: str) -> list[dict] | None:
    """The tasks of ``tasks.<field>`` when set (humaneval or a JSONL file), else None (CodeWorld's split)."""
    return None if path is None else named_tasks(path, f"tasks.{field}")


def validate(config: DictConfig) -> None:
    from ra3lab.execute import prepare

    check(0.0 <= config.threshold <= 1.0, "threshold", config.threshold, "a pass@1 threshold must lie in [0, 1]")
    check(len(config.seeds) >= 1, "seeds", list(config.seeds), "give at least one seed")
    midtraining = midtraining_config(config)
    prepare(config.midtraining.experiment, midtraining)
    arms = {"base", *midtraining.references, *(f"ra3_c{c:g}" for c in midtraining.cs)}
    for init in config.inits:
        check(init in arms, "inits", init, f"arms of {config.midtraining.experiment}: {', '.join(sorted(arms))}")
    rlvr_config(config, 0)                      # RLVRConfig validates its fields
    task_file(config.tasks.train_file, "train_file")      # a task file with missing fields fails here, before training
    task_file(config.tasks.heldout_file, "heldout_file")


def checkpoints(config: DictConfig) -> dict:
    """init -> checkpoint directory, running the mid-training study first when it is not done."""
    from ra3lab.execute import execute, prepare

    midtraining = midtraining_config(config)
    run = prepare(config.midtraining.experiment, midtraining)
    if not run.done:
        say(f"mid-training checkpoints missing: running {config.midtraining.experiment} first")
        execute(config.midtraining.experiment, midtraining)
    folder = run.path / "checkpoints"
    last_round = f"round_{midtraining.midtrain.rounds - 1}"
    return {init: folder / init / last_round if init.startswith("ra3_") else folder / init for init in config.inits}


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    inits = checkpoints(config)
    world = instantiate(midtraining_config(config).env)
    seed = int(config.seed)
    train = (task_file(config.tasks.train_file, "train_file")
             or world.tasks(config.tasks.train, "train", seed=seed * 10 + 7))
    heldout = (task_file(config.tasks.heldout_file, "heldout_file")
               or world.tasks(config.tasks.heldout, "heldout", seed=seed * 10 + 8))
    items = [(init, s) for init in config.inits for s in config.seeds]

    with SandboxPool(workers=config.workers) as pool:
        def one(index: int, item) -> dict:
            init, s = item
            say(f"RLVR from {init}, seed {s} ({index + 1}/{len(items)})")
            result = train_rlvr(inits[init], train, heldout, rlvr_config(config, int(s)),
                                run.path / "rlvr" / f"{init}_seed{s}", pool,
                                log=lambda step, metrics: say(f"{init} seed {s} step {step}: " + ", ".join(
                                    f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items()
                                    if isinstance(v, float) and k in ("rlvr/reward_mean", METRIC))))
            curve = [(row["step"], row[METRIC]) for row in result["history"] if METRIC in row]
            return {"init": init, "seed": int(s), "final": curve[-1][1],
                    "curve_steps": [step for step, _ in curve], "curve": [value for _, value in curve]}

        rows = run.map(one, items, "RLVR runs", "rlvr")
    table = pd.DataFrame([{"init": row["init"], "seed": row["seed"], "task_set": "codeworld", "step": step,
                           "value": value} for row in rows for step, value in zip(row["curve_steps"], row["curve"])])
    table.to_csv(run.path / "curves.csv", index=False)
    summary_table = convergence_table(table, config.threshold, reps=config.reps, rng=seed)
    (run.path / "convergence.md").write_text(to_markdown(summary_table))
    poi = None
    if {"ntp"} <= set(config.inits) and any(init.startswith("ra3_") for init in config.inits):
        ra3 = next(init for init in config.inits if init.startswith("ra3_"))
        point, low, high = probability_of_improvement(table, ra3, "ntp", reps=config.reps, rng=seed)
        poi = {"x": ra3, "y": "ntp", "point": point, "low": low, "high": high}
    fig = convergence_figure(table, "held-out pass@1", threshold=config.threshold, rng=seed)
    figures = style.save(fig, run.path / "figures", "codeworld_rlvr")

    def finite(value):
        return None if isinstance(value, float) and math.isinf(value) else value

    per_init = {init: {key: finite(value) for key, value in row.items()} for init, row in
                summary_table.to_dict(orient="index").items()}
    return {"inits": per_init, "probability_of_improvement": poi, "threshold": config.threshold,
            "curves": str(run.path / "curves.csv"), "figures": [str(path) for path in figures]}
