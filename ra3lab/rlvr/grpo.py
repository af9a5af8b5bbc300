"""RLVR: GRPO with TRL's ``GRPOTrainer`` from a saved causal LM on HumanEval-format tasks, rewarded by unit tests.

TRL does the GRPO: group-relative advantages ((r - group mean) / (group std + 1e-4)), the clipped objective (its
default ``loss_type="dapo"``: averaged over all completion tokens of the step), the KL term, AdamW, checkpoints
and resuming. The rollout is ours, handed to TRL as ``rollout_func``, because TRL's own transformers-generate path
stops only at eos or ``max_completion_length``: here a prompt is encoded by the line convention (as
:class:`~ra3lab.lm.HFGenerator` encodes it), completions are sampled from the softmax at ``temperature`` (top-k,
top-p and repetition penalty off, so TRL's tempered log-probabilities are those of the sampler) with a seed fixed
by (seed, step), and each stops at the end of its function body. A completion keeps the token that ended the body,
the model's choice to stop, which the reward cuts off.

Runs are deterministic per seed on one device: the data order is fixed by the seed up front (one epoch of
``steps * prompts_per_step`` rows that TRL reads in order), sampling by (seed, step), and the Trainer restores
the global RNG, the optimizer and the weights from a checkpoint, so a resumed run repeats the steps of one that
never stopped.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback, StoppingCriteriaList
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import pad

from ra3lab.errors import check
from ra3lab.evaluation import Limits, SandboxPool, solved
from ra3lab.evaluation.tasks import REQUIRED
from ra3lab.lm import LineCodec, check_compatible, load_model, load_tokenizer
from ra3lab.lm.generate import STOP, StopWhenCut, cut, prompt_ids
from ra3lab.rlvr.callbacks import StepMetrics
from ra3lab.rlvr.reward import unit_test_reward
from ra3lab.runs import atomic_write, json_safe

EVAL_BATCH = 64         # prompts per generate call in evaluation
MANIFEST = "rlvr.json"  # in output_dir: what the run was started with, so a resume can check it is the same run


def _integer(field: str, value, least: int) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= least, field, value,
          f"must be an integer >= {least}")


def _number(field: str, value, ok: bool, valid: str) -> None:
    check(isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and ok, field,
          value, valid)


@dataclass(frozen=True)
class RLVRConfig:
    """GRPO settings of :func:`train_rlvr`; a bad value raises ConfigError on construction."""

    steps: int = 100            # optimizer steps
    group_size: int = 8         # completions per prompt (GRPO's G, TRL's num_generations), >= 2
    prompts_per_step: int = 8   # prompts per optimizer step
    lr: float = 1e-6            # AdamW learning rate, constant
    beta: float = 0.0           # KL coefficient to the starting model; 0: no reference model
    temperature: float = 1.0    # sampling temperature of the rollouts, > 0
    max_new_tokens: int = 256   # completion budget in tokens, in training and in evaluation
    eval_every: int = 10        # steps between greedy pass@1 evaluations (also at step 0 and the last step)
    save_every: int = 50        # steps between checkpoints in output_dir (also at the last step)
    seed: int = 0               # data order, rollout sampling and TRL's seed
    timeout_s: float = 5.0      # wall and CPU seconds per program in the sandbox

    def __post_init__(self):
        for field, least in (("steps", 1), ("group_size", 2), ("prompts_per_step", 1), ("max_new_tokens", 1),
                             ("eval_every", 1), ("save_every", 1)):
            _integer(field, getattr(self, field), least)
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", self.seed, "must be an integer")
        _number("lr", self.lr, self.lr > 0, "must be a number > 0")
        _number("beta", self.beta, self.beta >= 0, "must be a number >= 0 (0: no KL term, no reference model)")
        _number("temperature", self.temperature, self.temperature > 0, "must be a number > 0 (GRPO samples)")
        _number("timeout_s", self.timeout_s, self.timeout_s > 0, "must be a positive number of seconds")


def grpo_args(config: RLVRConfig, output_dir: Path) -> GRPOConfig:
    """TRL's config for ``config``: one generation batch of ``prompts_per_step * group_size`` completions per
    optimizer step, read in dataset order, float32, a log every step, checkpoints every ``save_every`` steps.
    ``use_cache`` stays on, so the saved model generates with its KV cache as before."""
    return GRPOConfig(
        output_dir=str(output_dir), max_steps=config.steps, learning_rate=config.lr, lr_scheduler_type="constant",
        per_device_train_batch_size=config.prompts_per_step * config.group_size, gradient_accumulation_steps=1,
        num_generations=config.group_size, beta=config.beta, temperature=config.temperature,
        max_completion_length=config.max_new_tokens, shuffle_dataset=False, seed=config.seed,
        save_strategy="steps", save_steps=config.save_every, logging_steps=1, report_to="none", disable_tqdm=True,
        bf16=False, gradient_checkpointing=False, use_cache=True, disable_dropout=True, dataloader_pin_memory=False)


def check_tasks(field: str, tasks) -> dict[str, dict]:
    """``{task_id: task}`` of a non-empty list of HumanEval-format tasks; ConfigError naming the first bad one."""
    check(isinstance(tasks, list | tuple) and len(tasks) > 0, field, type(tasks).__name__,
          "give a non-empty list of HumanEval-format task dicts")
    by_id: dict[str, dict] = {}
    for index, task in enumerate(tasks):
        where = f"{field}[{index}]"
        check(isinstance(task, dict), where, task, "must be a dict with string fields task_id, prompt, test and "
              "entry_point")
        for key in REQUIRED:
            check(isinstance(task.get(key), str), f"{where}.{key}", task.get(key),
                  "missing or not a string: a task needs string fields task_id, prompt, test and entry_point")
        check(task["prompt"].endswith("\n"), f"{where}.prompt", task["prompt"][-40:], "must end with a newline")
        check(task["task_id"] not in by_id, f"{where}.task_id", task["task_id"], "duplicate: task ids must be unique")
        by_id[task["task_id"]] = task
    return by_id


def pass_at_1(model, tokenizer, tasks: list[dict], pool: SandboxPool, limits: Limits, max_new_tokens: int) -> float:
    """Greedy pass@1: the fraction of ``tasks`` whose greedy completion passes."""
    return float(solved(model, tokenizer, tasks, pool, max_new_tokens, limits=limits, batch_size=EVAL_BATCH).mean())


def through_body_end(codec: LineCodec, ids: list[int]) -> list[int]:
    """One row's generated ids up to its first eos, or, where the function body ended, up to the first token whose
    text lies past the end (the model's choice to stop there); the padding after either is dropped."""
    if codec.eos_id in ids:
        ids = ids[: ids.index(codec.eos_id) + 1]
    text = codec.decode(ids)
    kept = len(cut(text))
    if kept == len(text):
        return ids
    end = len(ids)
    while end > 1 and len(codec.decode(ids[: end - 1])) > kept:
        end -= 1
    return ids[:end]


def line_rollout(codec: LineCodec, config: RLVRConfig, clock: StepMetrics) -> Callable[[list[str], GRPOTrainer], dict]:
    """TRL's ``rollout_func``: one completion per prompt row (TRL repeats each prompt ``group_size`` times), timed
    by ``clock``; returns ``{prompt_ids, completion_ids, logprobs: None}`` (TRL scores the tokens itself)."""

    def rollout(prompts: list[str], trainer: GRPOTrainer) -> dict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        rows = prompt_ids(codec, prompts)
        width = max(map(len, rows))
        ids = pad([torch.tensor(row) for row in rows], padding_value=codec.pad_id, padding_side="left")
        mask = pad([torch.ones(len(row), dtype=torch.long) for row in rows], padding_value=0, padding_side="left")
        with clock.generating(), torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(config.seed * 100_003 + trainer.state.global_step)
            out = model.generate(
                input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature, top_k=0,
                top_p=1.0, repetition_penalty=1.0, pad_token_id=codec.pad_id, eos_token_id=codec.eos_id,
                stopping_criteria=StoppingCriteriaList([StopWhenCut(codec, width, STOP)]))
        completions = [through_body_end(codec, row[width:].tolist()) for row in out.cpu()]
        return {"prompt_ids": rows, "completion_ids": completions, "logprobs": None}

    return rollout


def _rows(tasks: list[dict], config: RLVRConfig) -> Dataset:
    """``steps * prompts_per_step`` rows {prompt, task_id}: the tasks epoch by epoch, each in an order fixed by seed."""
    generator = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    while len(order) < config.steps * config.prompts_per_step:
        order += torch.randperm(len(tasks), generator=generator).tolist()
    order = order[: config.steps * config.prompts_per_step]
    return Dataset.from_dict({"prompt": [tasks[i]["prompt"] for i in order],
                              "task_id": [tasks[i]["task_id"] for i in order]})


def _claim(output_dir: Path, manifest: dict) -> None:
    """Record ``manifest`` in a fresh output_dir; in one that holds a run, require it to be the same."""
    path = output_dir / MANIFEST
    if path.exists():
        stored = json.loads(path.read_text())
        changed = [key for key in manifest if stored.get(key) != manifest[key]]
        check(not changed, "output_dir", str(output_dir), f"holds a run with another {' and '.join(changed)}: "
              "call again with the same inputs to resume it, or give a new output_dir")
    else:
        atomic_write(path, json.dumps(manifest, indent=2))


def train_rlvr(checkpoint: Path, train_tasks: list[dict], eval_tasks: list[dict] | Mapping[str, list[dict]],
               config: RLVRConfig, output_dir: Path, pool: SandboxPool,
               log: Callable[[int, dict], None] | None = None) -> dict:
    """GRPO from the model and tokenizer in ``checkpoint`` (a save_pretrained directory or hub name) on
    ``train_tasks``; returns ``{"model_dir", "steps", "history", <last eval metrics>}``.

    eval_tasks: the held-out set, named "heldout", or ``{name: tasks}``; greedy pass@1 on each is logged as
    ``eval/pass@1/<name>``. ``log(step, metrics)`` gets every step's ``rlvr/`` metrics (see
    :class:`~ra3lab.rlvr.callbacks.StepMetrics`) and the evaluations. ``output_dir`` holds TRL's checkpoints
    (``checkpoint-<step>/``), ``rlvr.json`` and, at the end, the trained model and tokenizer in ``final/``. Called
    again on the same output_dir with the same inputs, the run resumes from its last checkpoint, and ``log`` gets the
    steps after it again; "history" holds every logged row from step 0. Bad input raises ConfigError before training.
    """
    check(isinstance(config, RLVRConfig), "config", type(config).__name__, "give an RLVRConfig")
    tasks_by_id = check_tasks("train_tasks", train_tasks)
    eval_sets = {"heldout": eval_tasks} if isinstance(eval_tasks, list | tuple) else eval_tasks
    check(isinstance(eval_sets, Mapping) and len(eval_sets) > 0, "eval_tasks", type(eval_tasks).__name__,
          "give a list of tasks or a non-empty {name: tasks} mapping")
    for name, tasks in eval_sets.items():
        check(isinstance(name, str) and name and "/" not in name, "eval_tasks", name,
              "task set names must be non-empty strings without '/'")
        check_tasks(f"eval_tasks[{name!r}]", tasks)
    model = load_model(str(checkpoint))
    tokenizer = load_tokenizer(str(checkpoint))
    check_compatible(model, tokenizer)
    output_dir = Path(output_dir)
    _claim(output_dir, {"checkpoint": str(checkpoint), "config": asdict(config), "train_tasks": list(tasks_by_id)})

    limits = Limits(wall_s=config.timeout_s, cpu_s=config.timeout_s)

    def evaluate(policy) -> dict[str, float]:
        return {f"eval/pass@1/{name}": pass_at_1(policy, tokenizer, list(tasks), pool, limits, config.max_new_tokens)
                for name, tasks in eval_sets.items()}

    metrics = StepMetrics(evaluate, config.eval_every, log)
    with warnings.catch_warnings():     # rollout_func is experimental in TRL 1.16; its API is pinned with TRL
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
        trainer = GRPOTrainer(model=model, reward_funcs=unit_test_reward(pool, tasks_by_id, limits),
                              args=grpo_args(config, output_dir), train_dataset=_rows(list(train_tasks), config),
                              processing_class=tokenizer, callbacks=[metrics],
                              rollout_func=line_rollout(LineCodec(tokenizer), config, metrics))
    trainer.remove_callback(PrinterCallback)    # rows go to ``log``, not to stdout
    trainer.train(resume_from_checkpoint=get_last_checkpoint(str(output_dir)))
    trainer.save_model(str(output_dir / "final"))
    history = [{key: value for key, value in row.items() if key == "step" or key.startswith(("rlvr/", "eval/"))}
               for row in trainer.state.log_history if any(key.startswith(("rlvr/", "eval/")) for key in row)]
    evaluated = [row for row in history if any(key.startswith("eval/") for key in row)]
    last = {key: value for key, value in evaluated[-1].items() if key.startswith("eval/")} if evaluated else {}
    return json_safe({"model_dir": str(output_dir / "final"), "steps": trainer.state.global_step, "history": history,
                      **last})
