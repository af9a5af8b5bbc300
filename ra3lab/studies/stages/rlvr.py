"""Stage ``rlvr``: GRPO (TRL) with the sandboxed unit-test reward from one mid-training arm's model (``arm``) with
one seed (``rlvr.seed``), on the tasks of its world's RL split (``tasks.*``, drawn with ``tasks.seed``: CodeWorld's
train split, CodeWorld-Plan's held-out families) or a task file; the held-out tasks are evaluated as ``rlvr_eval``
says at step 0, every ``rlvr.eval_every`` steps and at the end. The summary holds the held-out pass@1 curve
(``curve_steps``, ``curve``) with the thought and truncation rates of the same evaluations, the train pass rate of
each step's rollouts (``reward_steps``, ``rewards``), the final pass@1 and the area under the curve (``auc``, its
mean level: :func:`ra3lab.stats.area_under_curve`). Every step's metrics go to metrics.jsonl as GRPO logs them (a
resumed run's from its checkpoint on; the summary's curve holds every evaluation)."""

from __future__ import annotations

from typing import Any, cast

import transformers
from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import check
from ra3lab.evaluation import EvalConfig, SandboxPool, named_tasks
from ra3lab.log import say
from ra3lab.rlvr import RLVRConfig, train_rlvr
from ra3lab.rlvr.grpo import check_tasks, per_process
from ra3lab.runtime import processes
from ra3lab.stats import area_under_curve
from ra3lab.studies import codeworld_ra3
from ra3lab.studies.common import make_env
from ra3lab.studies.stages import as_stage, model_path
from ra3lab.studies.stages.midtrain import arm_of
from ra3lab.studies.stages.sources import source_of
from ra3lab.tracking import event_dir

KEYS = ["arm", "env", "tasks", "rlvr", "rlvr_eval", "workers", "tracking"]
METRIC = "eval/pass@1/heldout"
REWARD = "rlvr/reward_mean"     # per step: the sampled pass rate of that step's rollouts on the train tasks
# columns of a curve next to held-out pass@1, each from the same evaluation
RATES = {"thought_rate": "eval/thought_rate/heldout", "truncation_rate": "eval/truncation_rate/heldout"}
SHOWN = (REWARD, "rlvr/truncated_fraction", METRIC, *RATES.values())


def keys(config: DictConfig) -> list[str]:
    return KEYS


def upstream(config: DictConfig) -> dict:
    return {"model": ("midtrain", as_stage(config, "midtrain"))}


def block(config: DictConfig, key: str) -> dict[str, Any]:
    """A mapping block of the config (``rlvr``, ``rlvr_eval``) as a plain dict of keyword arguments."""
    return cast(dict[str, Any], OmegaConf.to_container(config[key]))


def task_file(path: str | None, field: str) -> list[dict] | None:
    """The tasks of ``tasks.<field>`` when set (humaneval or a JSONL file), else None (CodeWorld's split)."""
    return None if path is None else named_tasks(path, f"tasks.{field}")


def check_rlvr(config: DictConfig, rlvr: dict, evaluation: dict) -> None:
    """RLVRConfig and EvalConfig validate their fields; a task file with missing fields, or without reference
    bodies where a budget derives from them, fails here."""
    RLVRConfig(**rlvr)
    EvalConfig(**evaluation)
    for field, key, budget in (("train_file", "rlvr.max_new_tokens", rlvr.get("max_new_tokens")),
                               ("heldout_file", "eval.max_new_tokens", evaluation.get("max_new_tokens"))):
        tasks = task_file(config.tasks[field], field)
        if tasks is not None:
            check_tasks(f"tasks.{field}", tasks, None if budget else key)


def validate(config: DictConfig) -> None:
    arm_of(config)
    codeworld_ra3.validate_pipeline(config)
    check(isinstance(config.rlvr.seed, int), "rlvr.seed", config.rlvr.seed, "must be an integer")
    check_rlvr(config, block(config, "rlvr"), block(config, "rlvr_eval"))
    if "runtime" in config:
        per_process(RLVRConfig(**block(config, "rlvr")), processes(config.runtime))


def task_sets(config: DictConfig) -> tuple[list[dict], list[dict]]:
    """(train tasks, held-out tasks): the task files when given, else the world's tasks drawn with tasks.seed: to
    train on, of its source's ``RL_SPLIT`` (CodeWorld: train; CodeWorld-Plan: the held-out families, other inputs)."""
    world, seed, split = make_env(config.env), int(config.tasks.seed), source_of(config).RL_SPLIT
    train = task_file(config.tasks.train_file, "train_file") or world.tasks(config.tasks.train, split, seed * 10 + 7)
    heldout = (task_file(config.tasks.heldout_file, "heldout_file")
               or world.tasks(config.tasks.heldout, "heldout", seed * 10 + 8))
    return train, heldout


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    arm, seed = arm_of(config), int(config.rlvr.seed)
    train, heldout = task_sets(config)
    topic = f"rlvr {arm} seed {seed}"

    def log(step: int, metrics: dict) -> None:
        run.log(step, **metrics)                            # live: a tuning trial prunes on the held-out pass@1
        say(topic, f"step {step}: " + ", ".join(f"{key.split('/')[1]} {value:.3f}" for key, value in metrics.items()
                                                if isinstance(value, float) and key in SHOWN))

    with SandboxPool(workers=config.workers) as pool:
        result = train_rlvr(model_path(config, "model"), train, heldout, RLVRConfig(**block(config, "rlvr")),
                            run.path / "rlvr", pool, eval=EvalConfig(**block(config, "rlvr_eval")), log=log,
                            tensorboard=event_dir(config, run.path, "rlvr"), runtime=config.get("runtime"),
                            generation=config.get("generation"))
    evaluated = [row for row in result["history"] if METRIC in row]
    steps, curve = [row["step"] for row in evaluated], [row[METRIC] for row in evaluated]
    rewarded = [row for row in result["history"] if REWARD in row]
    return {"init": arm.name, "rlvr_seed": seed, "final": curve[-1],
            "auc": float(area_under_curve(curve, steps)) if len(curve) > 1 else None,
            "curve_steps": steps, "curve": curve,
            "reward_steps": [row["step"] for row in rewarded], "rewards": [row[REWARD] for row in rewarded],
            **{name: [row[key] for row in evaluated] for name, key in RATES.items()}, "steps": result["steps"]}
