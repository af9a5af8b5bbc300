"""RLVR: GRPO with TRL's ``GRPOTrainer`` from a saved causal LM on HumanEval-format tasks, rewarded by unit tests.

TRL does the GRPO: group-relative advantages ((r - group mean) / (group std + 1e-4)), the clipped objective (its
default ``loss_type="dapo"``: averaged over all completion tokens of the step that enter the loss), the KL term,
AdamW, checkpoints and resuming. The rollout is ours, handed to TRL as ``rollout_func``, because TRL's own
transformers-generate path stops only at eos or ``max_completion_length``: it is evaluation's generator,
:class:`~ra3lab.lm.HFGenerator`, sampling from the softmax at ``temperature`` (top-k, top-p and repetition penalty
off, so TRL's tempered log-probabilities are those of the sampler) with a seed fixed by (seed, step); a prompt is
encoded by the line convention, and each completion stops at the end of its function body or at its task's token
budget: ``max_new_tokens``, or by default the budget evaluation derives from the task
(:func:`ra3lab.evaluation.solve.budget`: the reference body plus room for a thought of ``eval.thought_tokens``
before each line). A completion keeps the token that ended the body, the model's choice to stop, which the reward
cuts off.

A *truncated* completion (its budget ran out before the body ended) is kept out of the loss: the rollout hands TRL
an ``env_mask`` of zeros for its tokens (ones for every other completion), which TRL multiplies into the loss mask;
its reward still enters its group's mean and std. TRL's ``mask_truncated_completions`` is not used: it calls a
completion truncated when its last token is not eos or pad, and ours end at the token that closes the body, so it
would mask every completion. A step whose completions are all truncated has loss 0 and zero gradients (the dapo
loss divides by the unmasked token count clamped to >= 1); AdamW's moments from earlier steps still move the
weights. ``rlvr/truncated_fraction`` logs the share per step.

Held-out evaluation is :func:`ra3lab.evaluation.evaluate` under an :class:`~ra3lab.evaluation.EvalConfig`
(sampled pass@k by default, with the thought and truncation rates), with the same seed at every evaluation step,
so the points of a curve differ by the weights, not by the random numbers.

Given a ``tensorboard`` folder, the run writes TensorBoard event files there as it goes: TRL's own step metrics
through transformers' ``TensorBoardCallback`` (under ``train/``: reward, kl, loss, learning rate ...) and the other
metrics of a step's row (``rlvr/`` timings, completion length and truncated fraction; the ``eval/`` evaluations,
step 0's included) under their own names. transformers 5 has no ``logging_dir`` argument (``report_to`` would write
to ``output_dir/runs/``), so the callback is handed a writer on that folder and ``report_to`` stays "none".

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
from typing import Any

import torch
from datasets import Dataset
from omegaconf import DictConfig
from transformers import PrinterCallback
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig, GRPOTrainer

from ra3lab.errors import check
from ra3lab.evaluation import EvalConfig, Limits, SandboxPool, evaluate
from ra3lab.evaluation.solve import budget
from ra3lab.evaluation.tasks import REQUIRED
from ra3lab.lm import HFGenerator, LineCodec, check_compatible, load_model, load_tokenizer
from ra3lab.lm.generate import STOP, completion_of, prompt_ids
from ra3lab.rlvr.callbacks import TRL_METRICS, StepMetrics
from ra3lab.rlvr.reward import unit_test_reward
from ra3lab.runs import atomic_write, json_safe
from ra3lab.runtime import gathered, place, resolve_device, resolve_dtype, world
from ra3lab.tracking import Scalars, scalars

EVAL_BATCH = 64         # completions per generate call in evaluation
EVAL_METRICS = ("thought_rate", "thought_length", "truncation_rate", "pass_with_thought", "pass_without_thought")
EVAL = EvalConfig()     # train_rlvr's default held-out evaluation: 8 samples per task at temperature 0.8
MANIFEST = "rlvr.json"  # in output_dir: what the run was started with, so a resume can check it is the same run
# TRL 1.16 still uses transformers 5's deprecated gradient-checkpointing names (its config's default, and the
# model's ``is_gradient_checkpointing`` at every step): FutureWarnings the user cannot act on, hidden where they arise
CHECKPOINTING_DEPRECATED = r"`(is_)?gradient_checkpointing` is deprecated"


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
    max_new_tokens: int | None = None   # rollout budget in tokens for every task; None: each task's derived budget
    eval_every: int = 10        # steps between held-out evaluations (also at step 0 and the last step)
    save_every: int = 50        # steps between checkpoints in output_dir (also at the last step)
    seed: int = 0               # data order, rollout sampling and TRL's seed
    timeout_s: float = 5.0      # wall and CPU seconds per program in the sandbox

    def __post_init__(self):
        for field, least in (("steps", 1), ("group_size", 2), ("prompts_per_step", 1), ("eval_every", 1),
                             ("save_every", 1)):
            _integer(field, getattr(self, field), least)
        if self.max_new_tokens is not None:
            _integer("max_new_tokens", self.max_new_tokens, 1)
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed", self.seed, "must be an integer")
        _number("lr", self.lr, self.lr > 0, "must be a number > 0")
        _number("beta", self.beta, self.beta >= 0, "must be a number >= 0 (0: no KL term, no reference model)")
        _number("temperature", self.temperature, self.temperature > 0, "must be a number > 0 (GRPO samples)")
        _number("timeout_s", self.timeout_s, self.timeout_s > 0, "must be a positive number of seconds")


def grpo_args(config: RLVRConfig, output_dir: Path, max_completion_length: int, runtime: DictConfig | None = None,
              generation: Mapping | None = None) -> GRPOConfig:
    """TRL's config for ``config``: one generation batch of ``prompts_per_step * group_size`` completions per
    optimizer step over all processes (each process takes its share: :func:`per_process`), read in dataset order,
    a log every step, checkpoints every ``save_every`` steps; ``max_completion_length``: the largest rollout
    budget, tokens. ``runtime`` (:mod:`ra3lab.runtime`): the CPU or this process's GPU, bf16 autocast where its
    dtype resolves to bf16, else float32. ``generation.backend=vllm``: TRL's vLLM (``generation.vllm_mode``)
    rolls out, stopping at the stop strings. ``use_cache`` stays on, so the saved model generates with its KV
    cache as before."""
    engine: dict[str, Any] = {}
    if generation is not None and generation["backend"] == "vllm":
        engine = {"use_vllm": True, "vllm_mode": generation["vllm_mode"],
                  "vllm_gpu_memory_utilization": float(generation["gpu_memory_utilization"]),
                  "generation_kwargs": {"stop": list(STOP), "include_stop_str_in_output": True}}
    return GRPOConfig(
        output_dir=str(output_dir), max_steps=config.steps, learning_rate=config.lr, lr_scheduler_type="constant",
        per_device_train_batch_size=per_process(config), gradient_accumulation_steps=1,
        num_generations=config.group_size, beta=config.beta, temperature=config.temperature,
        max_completion_length=max_completion_length, shuffle_dataset=False, seed=config.seed,
        save_strategy="steps", save_steps=config.save_every, logging_steps=1, report_to="none", disable_tqdm=True,
        gradient_checkpointing=False, use_cache=True, disable_dropout=True, dataloader_pin_memory=False,
        use_cpu=runtime is not None and resolve_device(runtime.device).type == "cpu",
        bf16=runtime is not None and resolve_dtype(runtime) == torch.bfloat16, **engine)


def per_process(config: RLVRConfig, processes: int | None = None) -> int:
    """Completions each of ``processes`` (default: this launch's) rolls out per step: its share of the step's
    ``prompts_per_step * group_size``; ConfigError when the processes cannot share them evenly."""
    processes = world()[1] if processes is None else processes
    completions = config.prompts_per_step * config.group_size
    check(completions % processes == 0, "rlvr.prompts_per_step", config.prompts_per_step,
          f"a step's {completions} completions (prompts_per_step x group_size) must split evenly over the "
          f"{processes} processes: choose prompts_per_step x group_size a multiple of {processes}")
    return completions // processes


def check_tasks(field: str, tasks, reference: str | None = None) -> dict[str, dict]:
    """``{task_id: task}`` of a non-empty list of HumanEval-format tasks; ConfigError naming the first bad one.
    ``reference``: the budget field that is null, so every task needs a ``canonical_solution`` to derive one from."""
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
        check(reference is None or isinstance(task.get("canonical_solution"), str), f"{where}.canonical_solution",
              task.get("canonical_solution"), f"missing: {reference} is null, so the token budget derives from the "
              f"reference body; give one or set {reference}")
        by_id[task["task_id"]] = task
    return by_id


def held_out(model, tokenizer, tasks: list[dict], name: str, pool: SandboxPool, eval: EvalConfig,
             limits: Limits) -> dict[str, float]:
    """``{eval/<metric>/<name>: value}`` of one :func:`~ra3lab.evaluation.evaluate` of ``tasks``: ``pass@<k>``
    for each k of ``eval.ks`` and ``EVAL_METRICS`` (rates in [0, 1], ``thought_length`` in tokens); a pass rate
    with or without a thought is left out when no completion falls in its group."""
    summary = evaluate(model, tokenizer, tasks, pool, eval, limits, EVAL_BATCH).summary()
    keys = [*(f"pass@{k}" for k in eval.ks), *EVAL_METRICS]
    return {f"eval/{key}/{name}": value for key in keys if (value := summary[key]) is not None}


def line_rollout(tokenizer, config: RLVRConfig, budgets: Mapping[str, int], metrics: StepMetrics
                 ) -> Callable[[list[str], GRPOTrainer], dict]:
    """TRL's ``rollout_func``: one completion per prompt row (TRL repeats each prompt ``group_size`` times) of at
    most ``budgets[prompt]`` new tokens, timed and counted by ``metrics`` (over every process's rows). Sampled by
    :class:`~ra3lab.lm.HFGenerator` with one seed per row of the step's global batch (fixed by the seed, the step
    and the row's place over all processes), so one process or several roll out the same completions; by TRL's
    vLLM engine under ``generation.backend=vllm``. Returns ``{prompt_ids, completion_ids, logprobs, env_mask}``
    (TRL scores the tokens itself; ``logprobs``: vLLM's of the sampled tokens, else None);
    ``completion_ids[row]``: :attr:`~ra3lab.lm.generate.Completion.ids`, through the token that ended the body;
    ``env_mask[row]``: one 0/1 per completion token, all 0 for a truncated completion (kept out of the loss,
    module docstring), all 1 otherwise."""

    def rollout(prompts: list[str], trainer: GRPOTrainer) -> dict:
        codec = LineCodec(tokenizer)
        encoded, rows = prompt_ids(codec, prompts), [budgets[prompt] for prompt in prompts]
        with metrics.generating():
            if trainer.use_vllm:
                _, ids, sampled, _ = trainer.vllm_generation.generate(prompts=encoded, images=None, num_generations=1)
                completions = [completion_of(codec, list(row[:budget]), budget) for row, budget in zip(ids, rows)]
                logprobs = [[token[0] for token in row[:len(c.ids)]] for row, c in zip(sampled, completions)]
            else:
                generator = HFGenerator(trainer.accelerator.unwrap_model(trainer.model), tokenizer)
                step, first = config.seed * 100_003 + trainer.state.global_step, world()[0] * len(prompts)
                completions = generator.generate(prompts, rows, "sample", config.temperature,
                                                 row_seeds=[step * 1_000_003 + first + row for row in range(len(rows))])
                logprobs = None
        lengths, truncated = [len(c.ids) for c in completions], [c.truncated for c in completions]
        metrics.rolled_out(gathered(lengths), gathered(truncated))     # the whole step's, over all processes
        return {"prompt_ids": encoded, "completion_ids": [list(c.ids) for c in completions], "logprobs": logprobs,
                "env_mask": [[0 if c.truncated else 1] * len(c.ids) for c in completions]}

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


def rollout_budgets(codec: LineCodec, tasks: list[dict], config: RLVRConfig, eval: EvalConfig) -> dict[str, int]:
    """``{prompt: budget}``, tokens per rollout: ``config.max_new_tokens``, or when it is None the task's derived
    budget with room for thoughts of ``eval.thought_tokens`` (the largest where tasks share a prompt)."""
    budgets: dict[str, int] = {}
    for task in tasks:
        own = config.max_new_tokens or budget(codec, task, eval.thought_tokens)
        budgets[task["prompt"]] = max(own, budgets.get(task["prompt"], 0))
    return budgets


def handing(log: Callable[[int, dict], None] | None, track: Scalars | None) -> Callable[[int, dict], None] | None:
    """StepMetrics' ``log``: every row to ``log``, and to ``track`` the metrics that TRL's own TensorBoardCallback
    does not write (those of ``TRL_METRICS`` it writes under TRL's names)."""
    if track is None:
        return log

    def hand(step: int, row: dict) -> None:
        track(step, {key: value for key, value in row.items() if key not in TRL_METRICS.values()})
        if log is not None:
            log(step, row)

    return hand


def train_rlvr(checkpoint: Path, train_tasks: list[dict], eval_tasks: list[dict] | Mapping[str, list[dict]],
               config: RLVRConfig, output_dir: Path, pool: SandboxPool,
               log: Callable[[int, dict], None] | None = None, eval: EvalConfig = EVAL,
               tensorboard: Path | None = None, runtime: DictConfig | None = None,
               generation: Mapping | None = None) -> dict:
    """GRPO from the model and tokenizer in ``checkpoint`` (a save_pretrained directory or hub name) on
    ``train_tasks``; returns ``{"model_dir", "steps", "history", <last eval metrics>}``.

    eval_tasks: the held-out set, named "heldout", or ``{name: tasks}``; each is evaluated under ``eval`` (the
    same seed every time) and logged as ``eval/pass@<k>/<name>`` for each k of ``eval.ks`` and
    ``eval/<metric>/<name>`` for the metrics of ``EVAL_METRICS`` (see :func:`held_out`); ``eval/pass@1/<name>`` is
    the convergence curve. ``log(step, metrics)`` gets every step's ``rlvr/`` metrics (see
    :class:`~ra3lab.rlvr.callbacks.StepMetrics`) and the evaluations. ``output_dir`` holds TRL's checkpoints
    (``checkpoint-<step>/``), ``rlvr.json`` and, at the end, the trained model and tokenizer in ``final/``. Called
    again on the same output_dir with the same inputs, the run resumes from its last checkpoint, and ``log`` gets the
    steps after it again; "history" holds every logged row from step 0. ``tensorboard``: a folder for TensorBoard
    event files of the run (module docstring); None: none. ``runtime`` and ``generation``: where the model trains
    and how it rolls out (:func:`grpo_args`). Bad input raises ConfigError before training.

    In a launch of several processes (:mod:`ra3lab.runtime`) every process calls this with the same arguments and
    its own ``output_dir``: TRL's trainer runs data parallel over them (each rolls out, rewards and trains on its
    share of a step's completions; TRL gathers the rewards for the group advantages and normalises the loss by the
    tokens of all processes), so the weights follow one process's with the same global batch; every process
    evaluates the held-out tasks alike.
    """
    check(isinstance(config, RLVRConfig), "config", type(config).__name__, "give an RLVRConfig")
    check(isinstance(eval, EvalConfig), "eval", type(eval).__name__, "give an EvalConfig")
    tasks_by_id = check_tasks("train_tasks", train_tasks, None if config.max_new_tokens else "max_new_tokens")
    eval_sets = {"heldout": eval_tasks} if isinstance(eval_tasks, list | tuple) else eval_tasks
    check(isinstance(eval_sets, Mapping) and len(eval_sets) > 0, "eval_tasks", type(eval_tasks).__name__,
          "give a list of tasks or a non-empty {name: tasks} mapping")
    for name, tasks in eval_sets.items():
        check(isinstance(name, str) and name != "" and "/" not in name, "eval_tasks", name,
              "task set names must be non-empty strings without '/'")
        check_tasks(f"eval_tasks[{name!r}]", tasks, None if eval.max_new_tokens else "eval.max_new_tokens")
    model = place(load_model(str(checkpoint)), runtime, training=True)
    tokenizer = load_tokenizer(str(checkpoint))
    check_compatible(model, tokenizer)
    output_dir = Path(output_dir)
    _claim(output_dir, json.loads(json.dumps({"checkpoint": str(checkpoint), "config": asdict(config),
                                              "eval": asdict(eval), "train_tasks": list(tasks_by_id)})))

    limits = Limits(wall_s=config.timeout_s, cpu_s=config.timeout_s)
    codec = LineCodec(tokenizer)
    budgets = rollout_budgets(codec, list(train_tasks), config, eval)

    def evaluations(policy) -> dict[str, float]:
        return {key: value for name, tasks in eval_sets.items()
                for key, value in held_out(policy, tokenizer, list(tasks), name, pool, eval, limits).items()}

    with scalars(tensorboard) as track:
        metrics = StepMetrics(evaluations, config.eval_every, handing(log, track))
        reporting = [] if track is None else [TensorBoardCallback(track.writer)]
        with warnings.catch_warnings():     # rollout_func is experimental in TRL 1.16; its API is pinned with TRL
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            warnings.filterwarnings("ignore", message=CHECKPOINTING_DEPRECATED, category=FutureWarning)
            trainer = GRPOTrainer(model=model, reward_funcs=unit_test_reward(pool, tasks_by_id, limits),
                                  args=grpo_args(config, output_dir, max(budgets.values()), runtime, generation),
                                  train_dataset=_rows(list(train_tasks), config), processing_class=tokenizer,
                                  callbacks=[metrics, *reporting],
                                  rollout_func=line_rollout(tokenizer, config, budgets, metrics))
        trainer.remove_callback(PrinterCallback)    # rows go to ``log``, not to stdout
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=CHECKPOINTING_DEPRECATED, category=FutureWarning)
            trainer.train(resume_from_checkpoint=get_last_checkpoint(str(output_dir)))
    trainer.save_model(str(output_dir / "final"))
    history = [{key: value for key, value in row.items() if key == "step" or key.startswith(("rlvr/", "eval/"))}
               for row in trainer.state.log_history if any(key.startswith(("rlvr/", "eval/")) for key in row)]
    evaluated = [row for row in history if any(key.startswith("eval/") for key in row)]
    last = {key: value for key, value in evaluated[-1].items() if key.startswith("eval/")} if evaluated else {}
    return json_safe({"model_dir": str(output_dir / "final"), "steps": trainer.state.global_step, "history": history,
                      **last})
