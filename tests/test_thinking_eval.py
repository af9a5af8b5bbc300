"""Evaluation that lets the model think: sampled and decision-greedy decoding, derived budgets that fit a model
thinking at every line, the thought and truncation statistics, and bad settings refused by field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ra3lab.codeworld import CodeWorld
from ra3lab.errors import ConfigError
from ra3lab.evaluation import EvalConfig, SandboxPool, evaluate
from ra3lab.evaluation.solve import budget, thinking
from ra3lab.lm import HFGenerator
from ra3lab.lm.generate import DecisionGreedy, completion_of


@pytest.fixture(scope="module")
def world(thinking_model):
    """The tiny model that thinks (conftest) and six held-out CodeWorld tasks."""
    model, tokenizer, codec = thinking_model
    tasks = CodeWorld().tasks(6, "heldout", seed=3)
    return model, tokenizer, codec, tasks


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as pool:
        yield pool


def test_decision_greedy_thinks_exactly_where_the_comment_mass_exceeds_a_half(world):
    _, _, codec, _ = world
    comment = codec.comment_mask
    processor = DecisionGreedy(codec, start=1)
    indent = codec.indent_ids("    x = 1")
    code = codec.content_ids("x = 1")[:1]
    rows = torch.tensor([[0, *indent], [0, *indent], [0, *code]])          # at a line start twice, mid-line once
    scores = torch.zeros(3, len(comment))
    share = [0.6, 0.4, 0.9]                                                 # comment mass per row
    for r, p in enumerate(share):
        scores[r, comment] = math.log(p / int(comment.sum()))
        scores[r, ~comment] = math.log((1 - p) / int((~comment).sum()))
    out = processor(rows, scores.clone())
    assert torch.isinf(out[0, ~comment]).all() and torch.isfinite(out[0, comment]).all()     # 0.6 > 0.5: think
    assert torch.isinf(out[1, comment]).all() and torch.isfinite(out[1, ~comment]).all()     # 0.4: do not
    assert torch.equal(out[2], scores[2])                                                    # not a line start


def test_sampled_evaluation_is_reproducible_by_seed_and_thinks(world, pool):
    model, tokenizer, _, tasks = world
    config = EvalConfig(n=4, k=(1, 2), temperature=1.0, seed=0)
    first = evaluate(model, tokenizer, tasks, pool, config)
    again = evaluate(model, tokenizer, tasks, pool, config)
    other = evaluate(model, tokenizer, tasks, pool, EvalConfig(n=4, k=(1, 2), temperature=1.0, seed=1))
    for name in ("passed", "truncated", "thoughts", "code_lines", "thought_tokens"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert first.passed.shape == (6, 4)
    assert not all(np.array_equal(getattr(first, n), getattr(other, n)) for n in ("thoughts", "code_lines",
                                                                                  "thought_tokens"))
    summary = first.summary()
    print(summary)
    assert summary["thought_rate"] > 0                  # sampling lets a model pre-trained with comments think
    assert summary["truncation_rate"] < 0.5             # it ends its bodies within the derived budget
    assert summary["thought_rate"] == first.thoughts.sum() / first.code_lines.sum()
    greedy = evaluate(model, tokenizer, tasks, pool, EvalConfig(decoding="greedy", k=(1,)))
    assert greedy.passed.shape == (6, 1) and set(greedy.summary()) >= {"pass@1", "truncation_rate"}


def test_a_model_that_thinks_at_every_line_fits_the_derived_budget(world):
    """The completion a model writing an L_z-token thought before every reference line would produce, ended by
    the next function: within the derived budget it is complete; within the plain body's budget it is cut."""
    _, _, codec, tasks = world
    lz = 12
    for task in tasks:
        lines = task["canonical_solution"].rstrip("\n").split("\n")
        ids = []
        for line in lines:
            thought = codec.content_ids("# " + " ".join(["keep the values"] * lz))[:lz] + [codec.newline_id]
            ids += codec.indent_ids(line) + thought + codec.indent_ids(line) + codec.content_ids(line)
        ids += codec.encode_line("def g(xs, k):")
        derived = budget(codec, task, lz)
        done = completion_of(codec, ids, derived)
        assert not done.truncated and thinking(codec, done.text).thoughts == len(lines), task["task_id"]
        plain = len(codec.encode_lines(lines, bos=False)[0])
        assert completion_of(codec, ids[:plain], plain).truncated


def test_completions_report_truncation_and_their_thoughts(world):
    model, tokenizer, codec, tasks = world
    generator = HFGenerator(model, tokenizer)
    short = generator.generate([tasks[0]["prompt"]] * 3, budgets=[2, 3, 400], decoding="sample", seed=0)
    assert [c.truncated for c in short[:2]] == [True, True] and short[0].tokens == 2
    assert not short[2].truncated and short[2].tokens < 400          # the model ends the body itself
    way = thinking(codec, "    # count the evens\n    n = 0\n\n    # done\n    return n\n")
    assert (way.thoughts, way.code_lines) == (2, 2)
    assert way.thought_tokens == len(codec.content_ids("# count the evens")) + len(codec.content_ids("# done")) - 2


@pytest.mark.parametrize(("settings", "field"), [
    ({"n": 2, "k": (1, 5)}, "eval.n"), ({"temperature": 0.0}, "eval.temperature"),
    ({"decoding": "beam"}, "eval.decoding"), ({"max_new_tokens": 0}, "eval.max_new_tokens"),
    ({"k": (0,)}, "eval.k")])
def test_bad_evaluation_settings_name_their_field(settings, field):
    with pytest.raises(ConfigError, match=field):
        EvalConfig(**settings)


def test_a_task_without_a_reference_needs_an_explicit_budget(world):
    _, _, codec, tasks = world
    bare = {key: value for key, value in tasks[0].items() if key != "canonical_solution"}
    with pytest.raises(ConfigError, match="eval.max_new_tokens"):
        budget(codec, bare, 12)
