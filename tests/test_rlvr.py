"""ra3lab.rlvr on a tiny CodeWorld model: the unit-test reward, the rollout's end of a completion and its budgets,
truncated completions kept out of the loss, a short GRPO run's metrics (the held-out ones as ``evaluate`` gives
them), resuming from a checkpoint as if never stopped, and the bad inputs caught before training."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import DistilBertConfig, DistilBertModel

from ra3lab.codeworld import CodeWorld
from ra3lab.errors import ConfigError
from ra3lab.evaluation import EvalConfig, Limits, SandboxPool, evaluate
from ra3lab.evaluation.solve import budget
from ra3lab.lm import HFGenerator, LineCodec, build_model, load_model, load_tokenizer, train_ntp, train_tokenizer
from ra3lab.lm.generate import completion_of, cut
from ra3lab.rlvr import RLVRConfig, train_rlvr, unit_test_reward
from ra3lab.rlvr.callbacks import TRL_METRICS, StepMetrics
from ra3lab.rlvr.grpo import EVAL_BATCH, EVAL_METRICS, line_rollout, rollout_budgets

STEP_METRICS = {*TRL_METRICS.values(), "rlvr/generation_s", "rlvr/update_s", "rlvr/completion_length",
                "rlvr/truncated_fraction"}
SMALL = {"group_size": 4, "prompts_per_step": 2, "lr": 1e-4, "temperature": 0.7, "max_new_tokens": 40, "timeout_s": 5.0}
EVAL = EvalConfig(n=4, k=(1, 2), seed=5)     # sampled, derived budgets: small enough for CPU tests


class Stop(Exception):
    """Raised from ``log`` to interrupt a run, as a killed job would be."""


@pytest.fixture(scope="module")
def world() -> CodeWorld:
    return CodeWorld(n_skills=4, skills_per_program=(1, 2), lines_per_skill=(2, 3), seed=0)


@pytest.fixture(scope="module")
def tokenizer(world):
    programs = world.sample(200, "train", seed=0)
    return train_tokenizer([line for program in programs for line in program.lines()], vocab_size=400)


@pytest.fixture(scope="module")
def checkpoint(world, tokenizer, tmp_path_factory) -> Path:
    """A tiny Llama pre-trained on CodeWorld programs (each ending in eos), so that some samples pass; 20% of the
    skills come with their intent comment, as the studies' base models see them, so that samples think at times."""
    codec = LineCodec(tokenizer)
    sequences = [codec.encode_lines(program.lines())[0] + [codec.eos_id]
                 for program in world.sample(200, "train", seed=0)]
    model = build_model(tokenizer, hidden=64, layers=2, heads=4)
    train_ntp(model, sequences, steps=150, batch_size=16, lr=3e-3)
    path = tmp_path_factory.mktemp("checkpoint")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def tasks(world) -> dict[str, list[dict]]:
    return {"train": world.tasks(16, "train", seed=1), "heldout": world.tasks(8, "heldout", seed=1)}


def parity_task(index: int) -> dict:
    """A task whose completion lands inside a string the function returns, passing when the string's length is
    even: every completion runs, so truncated ones too get rewards of 0 and 1."""
    return {"task_id": f"parity/{index}", "entry_point": "f",
            "prompt": f'def f(xs):\n    """Return the text below."""\n    text = """{index}\n',
            "test": '"""\n    return text\n\n\ndef check(candidate):\n    assert len(candidate([])) % 2 == 0\n'}


def fake_trainer(model, step: int = 0) -> SimpleNamespace:
    """What the rollout reads of TRL's trainer."""
    return SimpleNamespace(model=model, accelerator=SimpleNamespace(unwrap_model=lambda module: module),
                           state=SimpleNamespace(global_step=step), use_vllm=False)


def evaluated(model, tokenizer, heldout: dict[str, list[dict]], pool, eval: EvalConfig, timeout_s: float) -> dict:
    """The ``eval/`` metrics train_rlvr should log for ``model``, from ``evaluate`` directly."""
    keys = [*(f"pass@{k}" for k in eval.ks), *EVAL_METRICS]
    row = {}
    for name, tasks in heldout.items():
        summary = evaluate(model, tokenizer, tasks, pool, eval, Limits(wall_s=timeout_s, cpu_s=timeout_s),
                           EVAL_BATCH).summary()
        row.update({f"eval/{key}/{name}": summary[key] for key in keys if summary[key] is not None})
    return row


# --- the reward and the end of a completion --------------------------------------------------------------------

def test_reward_is_one_for_canonical_solutions_and_zero_for_wrong_ones(tasks, pool):
    train = tasks["train"]
    reward = unit_test_reward(pool, {task["task_id"]: task for task in train}, Limits(wall_s=1.0, cpu_s=1.0))
    ids = [task["task_id"] for task in train]
    prompts = [task["prompt"] for task in train]
    canonical = [task["canonical_solution"] for task in train]
    logged = []
    assert reward(prompts, canonical, task_id=ids, log_metric=lambda name, value: logged.append(name)) == [1.0] * 16
    assert logged == ["reward_s"]
    # what follows the body is cut off before the tests run
    trailing = [text + "def g(xs):\n    raise ValueError\n" for text in canonical]
    assert reward(prompts, trailing, task_id=ids) == [1.0] * 16
    wrong = ["    return None\n", "    return xs +\n", "    while True:\n        pass\n",
             "    import sys; sys.exit(0)\n"]
    assert reward(prompts[:4], wrong, task_id=ids[:4]) == [0.0] * 4
    shifted = canonical[1:] + canonical[:1]     # each task gets another task's solution
    assert sum(reward(prompts, shifted, task_id=ids)) < 16
    with pytest.raises(ConfigError) as error:
        reward(prompts[:1], canonical[:1], task_id=["CodeWorld/nowhere"])
    assert error.value.field == "task_id"


def test_a_completion_keeps_the_token_that_ends_the_body(tokenizer):
    codec = LineCodec(tokenizer)
    body = codec.encode_lines(["    xs = sorted(xs)", "    return xs"], bos=False)[0]
    after = codec.encode_lines(["def g(xs):"], bos=False)[0]
    assert completion_of(codec, body + after + [codec.pad_id] * 3, 40).ids == (*body, after[0])
    assert completion_of(codec, body + [codec.eos_id, codec.pad_id, codec.pad_id], 40).ids == (*body, codec.eos_id)
    assert completion_of(codec, body, len(body)).ids == tuple(body)     # ran out of tokens: kept whole


def test_rollouts_keep_to_their_tasks_budgets_and_mask_the_truncated(checkpoint, tokenizer, tasks):
    codec = LineCodec(tokenizer)
    train = tasks["train"][:4]
    derived = rollout_budgets(codec, train, RLVRConfig(), EvalConfig(thought_tokens=3))   # max_new_tokens: None
    assert derived == {task["prompt"]: budget(codec, task, 3) for task in train}
    assert set(rollout_budgets(codec, train, RLVRConfig(max_new_tokens=7), EvalConfig()).values()) == {7}
    budgets = {**derived, train[0]["prompt"]: 3, train[1]["prompt"]: 3}     # too short for two tasks' bodies
    metrics = StepMetrics(lambda model: {}, 1)
    prompts = [task["prompt"] for task in train for _ in range(3)]
    rollout = line_rollout(tokenizer, RLVRConfig(temperature=0.7), budgets, metrics)
    out = rollout(prompts, fake_trainer(load_model(checkpoint)))
    short = [budgets[prompt] == 3 for prompt in prompts]
    assert metrics.truncated == short and metrics.lengths == [len(ids) for ids in out["completion_ids"]]
    for ids, mask, prompt, truncated in zip(out["completion_ids"], out["env_mask"], prompts, short):
        text = codec.decode(ids)
        if truncated:       # the budget ran out inside the body: every token out of the loss
            assert len(ids) == 3 and codec.eos_id not in ids and cut(text) == text and mask == [0, 0, 0]
        else:               # the body ended (or eos) within the task's derived budget
            assert len(ids) <= budgets[prompt] and (ids[-1] == codec.eos_id or cut(text) != text)
            assert mask == [1] * len(ids)


# --- training --------------------------------------------------------------------------------------------------

def test_rollouts_are_the_samples_of_the_evaluation_generator(checkpoint, tokenizer, tasks):
    """One generator: at the step's row seeds the rollout's completions are HFGenerator's, token for token, and
    the same as when the rollout generated by itself (their lengths and truncation, pinned); and a row's
    completion does not depend on the rows beside it, as when a second process rolls out the second half."""
    train = tasks["train"][:6]
    budgets = {**{task["prompt"]: 40 for task in train}, train[0]["prompt"]: 3}
    prompts = [task["prompt"] for task in train for _ in range(3)]
    model = load_model(checkpoint)
    metrics = StepMetrics(lambda model: {}, 1)
    out = line_rollout(tokenizer, RLVRConfig(temperature=0.7, seed=2), budgets, metrics)(prompts, fake_trainer(model))
    seeds = [2 * 100_003 * 1_000_003 + row for row in range(len(prompts))]
    generated = HFGenerator(model, tokenizer).generate(prompts, [budgets[p] for p in prompts], "sample", 0.7,
                                                       row_seeds=seeds)
    assert out["completion_ids"] == [list(c.ids) for c in generated]
    assert metrics.truncated == [c.truncated for c in generated]
    half = HFGenerator(model, tokenizer).generate(prompts[9:], [budgets[p] for p in prompts[9:]], "sample", 0.7,
                                                  row_seeds=seeds[9:])
    assert [list(c.ids) for c in half] == out["completion_ids"][9:]
    assert metrics.lengths == [3, 3, 3, 39, 40, 40, 40, 40, 40, 23, 23, 23, 40, 40, 40, 40, 37, 40]


def test_a_short_run_logs_every_metric_with_finite_values(checkpoint, tokenizer, tasks, pool, tmp_path):
    config = RLVRConfig(steps=3, beta=0.04, eval_every=2, save_every=2, **SMALL)
    rows = []
    result = train_rlvr(checkpoint, tasks["train"], tasks, config, tmp_path, pool, log=lambda s, m: rows.append((s, m)),
                        eval=EVAL)
    assert [step for step, _ in rows] == [0, 1, 2, 3]
    evals = {f"eval/{key}/{name}" for name in tasks for key in ("pass@1", "pass@2", "thought_rate", "thought_length",
                                                                   "truncation_rate")}
    maybe = {f"eval/{key}/{name}" for name in tasks for key in ("pass_with_thought", "pass_without_thought")}
    for step, metrics in rows:
        assert STEP_METRICS <= set(metrics) if step else not set(metrics) & STEP_METRICS, step
        expected = evals if step in (0, 2, 3) else set()
        assert expected <= set(metrics) - STEP_METRICS <= expected | (maybe if expected else set()), step
        assert all(math.isfinite(value) for value in metrics.values()), metrics
    step = rows[1][1]
    assert 0 <= step["rlvr/reward_mean"] <= 1 and 0 <= step["rlvr/zero_std_fraction"] <= 1
    assert step["rlvr/generation_s"] > 0 and step["rlvr/update_s"] > 0 and step["rlvr/completion_length"] >= 1
    # the held-out metrics are evaluate's, with the same seed at every step: step 0 from the starting model, the
    # last step from the trained one
    assert rows[0][1] == evaluated(load_model(checkpoint), tokenizer, tasks, pool, EVAL, SMALL["timeout_s"])
    assert rows[0][1]["eval/thought_rate/train"] > 0 and "eval/pass_with_thought/train" in rows[0][1]   # it thinks
    final = load_model(result["model_dir"])
    last = {key: value for key, value in rows[-1][1].items() if key.startswith("eval/")}
    assert last == evaluated(final, tokenizer, tasks, pool, EVAL, SMALL["timeout_s"])
    assert result["steps"] == 3 and result["history"] == [{"step": s, **m} for s, m in rows]
    assert result["eval/pass@1/heldout"] == rows[-1][1]["eval/pass@1/heldout"]
    assert final.config.vocab_size == len(tokenizer) and final.config.use_cache
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    # the same output_dir with another config or another evaluation is another run
    for other, evaluation, changed in ((RLVRConfig(steps=4, **SMALL), EVAL, "config"),
                                       (config, EvalConfig(n=4, k=(1, 2), seed=6), "eval")):
        with pytest.raises(ConfigError) as error:
            train_rlvr(checkpoint, tasks["train"], tasks, other, tmp_path, pool, eval=evaluation)
        assert error.value.field == "output_dir" and changed in error.value.valid


def test_truncated_completions_are_counted_and_kept_out_of_the_loss(checkpoint, tasks, pool, tmp_path):
    """A budget of 4 tokens truncates every completion of the step, yet their rewards differ within groups
    (parity tasks): were they in the loss, the weights would move."""
    config = RLVRConfig(steps=1, save_every=1, eval_every=1, **{**SMALL, "temperature": 1.0, "max_new_tokens": 4})
    rows = []
    result = train_rlvr(checkpoint, [parity_task(i) for i in range(4)], tasks["heldout"], config, tmp_path, pool,
                        log=lambda step, metrics: rows.append(metrics), eval=EvalConfig(n=2, k=1, max_new_tokens=4))
    step = rows[1]
    assert step["rlvr/truncated_fraction"] == 1.0 and step["rlvr/completion_length"] == 4.0
    assert step["rlvr/zero_std_fraction"] < 1.0, "no group had a learning signal: the test would show nothing"
    assert step["rlvr/grad_norm"] == 0.0 and step["rlvr/entropy"] == 0.0
    start, trained = load_model(checkpoint).state_dict(), load_model(result["model_dir"]).state_dict()
    for name in start:
        assert torch.equal(trained[name], start[name]), name
    # 4 tokens hold no held-out body (two lines and a return at least): evaluation counts every completion that
    # has not ended by then, the same before and after the step, whose weights did not move
    assert rows[0]["eval/truncation_rate/heldout"] == rows[1]["eval/truncation_rate/heldout"] > 0


def test_training_hides_only_the_gradient_checkpointing_deprecation(checkpoint, tasks, pool, tmp_path):
    """TRL reads transformers' deprecated ``is_gradient_checkpointing`` at every step: the FutureWarning says
    nothing to the user and is hidden around training, and only there."""
    config = RLVRConfig(steps=1, save_every=1, eval_every=1, **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_rlvr(checkpoint, tasks["train"], tasks["heldout"][:2], config, tmp_path, pool,
                   eval=EvalConfig(n=1, k=1))
    assert not [str(w.message) for w in caught if "gradient_checkpointing" in str(w.message)]
    with pytest.warns(FutureWarning, match="is_gradient_checkpointing"):
        assert load_model(checkpoint).is_gradient_checkpointing is False


def test_a_resumed_run_reaches_the_state_of_an_uninterrupted_one(checkpoint, tasks, pool, tmp_path):
    config = RLVRConfig(steps=4, beta=0.04, eval_every=2, save_every=2, seed=3, **SMALL)
    whole = train_rlvr(checkpoint, tasks["train"], tasks["heldout"], config, tmp_path / "whole", pool, eval=EVAL)

    def stop_at_3(step, metrics):       # after checkpoint-2, during step 3, as a kill would
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        train_rlvr(checkpoint, tasks["train"], tasks["heldout"], config, tmp_path / "resumed", pool, log=stop_at_3,
                   eval=EVAL)
    assert not (tmp_path / "resumed" / "final").exists()
    steps = []
    resumed = train_rlvr(checkpoint, tasks["train"], tasks["heldout"], config, tmp_path / "resumed", pool,
                         log=lambda step, metrics: steps.append(step), eval=EVAL)
    assert steps == [3, 4]

    def measured(history):      # everything but the wall times
        return [{key: value for key, value in row.items() if not key.endswith("_s")} for row in history]

    assert measured(resumed["history"]) == measured(whole["history"])
    assert [row["rlvr/reward_std"] for row in whole["history"][1:]] != [0.0] * 4, "no step had a learning signal"
    a, b = load_model(whole["model_dir"]).state_dict(), load_model(resumed["model_dir"]).state_dict()
    start = load_model(checkpoint).state_dict()
    assert any(not torch.equal(a[name], start[name]) for name in a), "training did not move the weights"
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6)


# --- bad input, caught before training -------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("steps", 0), ("group_size", 1), ("prompts_per_step", 0), ("lr", 0.0),
                                          ("beta", -0.1), ("temperature", 0.0), ("max_new_tokens", 0),
                                          ("eval_every", 0), ("save_every", 1.5), ("seed", "0"),
                                          ("timeout_s", float("nan"))])
def test_bad_config_values(field, value):
    with pytest.raises(ConfigError) as error:
        RLVRConfig(**{field: value})
    assert error.value.field == field


def test_bad_checkpoints_tasks_and_tokenizers(checkpoint, tasks, pool, tmp_path):
    config = RLVRConfig(steps=1, **SMALL)
    train, heldout = tasks["train"], tasks["heldout"]

    def field_of(*args, **kwargs) -> str:
        with pytest.raises(ConfigError) as error:
            train_rlvr(*args, **kwargs)
        return error.value.field

    out = tmp_path / "out"
    assert field_of(tmp_path / "missing", train, heldout, config, out, pool) == "model"
    encoder = tmp_path / "encoder"      # a model, but not a causal LM
    encoder_config = DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(encoder_config).save_pretrained(encoder)
    assert field_of(encoder, train, heldout, config, out, pool) == "model"
    mismatched = tmp_path / "mismatched"    # the model with a tokenizer of more tokens than it embeds
    load_model(checkpoint).save_pretrained(mismatched)
    larger = load_tokenizer(checkpoint)
    larger.add_tokens([f"<extra_{i}>" for i in range(8)])
    larger.save_pretrained(mismatched)
    assert field_of(mismatched, train, heldout, config, out, pool) == "tokenizer"
    no_test = [{key: value for key, value in task.items() if key != "test"} for task in train]
    assert field_of(checkpoint, no_test, heldout, config, out, pool) == "train_tasks[0].test"
    unterminated = [{**heldout[0], "prompt": heldout[0]["prompt"].rstrip("\n")}]
    assert field_of(checkpoint, train, unterminated, config, out, pool) == "eval_tasks['heldout'][0].prompt"
    assert field_of(checkpoint, train + train[:1], heldout, config, out, pool) == "train_tasks[16].task_id"
    assert field_of(checkpoint, [], heldout, config, out, pool) == "train_tasks"
    assert field_of(checkpoint, train, {}, config, out, pool) == "eval_tasks"
    assert field_of(checkpoint, train, heldout, {"steps": 1}, out, pool) == "config"
    assert field_of(checkpoint, train, heldout, config, out, pool, eval={"n": 1}) == "eval"
    # derived budgets need reference bodies, in training (max_new_tokens null) and in evaluation (the parity test
    # trains without them on a fixed budget)
    bare = [{key: value for key, value in task.items() if key != "canonical_solution"} for task in train]
    derived = RLVRConfig(steps=1, **{**SMALL, "max_new_tokens": None})
    assert field_of(checkpoint, bare, heldout, derived, out, pool) == "train_tasks[0].canonical_solution"
    assert field_of(checkpoint, train, bare, config, out, pool) == "eval_tasks['heldout'][0].canonical_solution"
    assert not out.exists()     # nothing was started
