"""RA3's pieces on a tiny real model: rollouts through the shared KV cache, line scores, the reward,
the E-step's learning signal, and resumable EM rounds."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from ra3lab.codeworld import CodeWorld
from ra3lab.errors import ConfigError
from ra3lab.lm import LineCodec, build_model, token_logprobs, train_ntp, train_tokenizer
from ra3lab.ra3 import em
from ra3lab.ra3.estep import Corpus, e_step
from ra3lab.ra3.evaluate import heldout_nll
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import boundary_scores
from ra3lab.ra3.reward import advantages, line_rewards
from ra3lab.ra3.rollout import Rollout, sample_thoughts

HEADER = 2
ESTEP = {"steps": 6, "snippets_per_step": 3, "group_size": 4, "max_thought_tokens": 6, "temperature": 1.0,
         "lr": 3e-3, "reward": "ra3", "baseline": "group", "normalize": True, "method": "rl"}


@pytest.fixture(scope="module")
def world():
    """A tiny model that writes intent comments (pre-trained on a corpus where every skill has one)."""
    programs = CodeWorld(comment_fraction=1.0).sample(120, seed=0)
    tokenizer = train_tokenizer([line for p in programs for line in p.lines()], vocab_size=320)
    codec = LineCodec(tokenizer)
    model = build_model(tokenizer, hidden=32, layers=2, heads=2, seed=0)
    train_ntp(model, [codec.encode_lines(p.lines())[0] for p in programs], steps=60, batch_size=16, lr=1e-2)
    plain = CodeWorld(comment_fraction=0.0).sample(12, seed=1)
    snippets = [p.lines(comments=False) for p in plain]
    corpus = Corpus(snippets, [[t >= HEADER for t in range(len(s))] for s in snippets],
                    [{HEADER + b for b in p.boundaries} for p in plain])
    return model, tokenizer, codec, corpus


def prefix_ids(codec, rollout: Rollout, t: int) -> list[int]:
    lines = []
    for i in range(t):
        if i in rollout.thoughts:
            lines.append(rollout.thoughts[i])
        lines.append(rollout.snippet[i])
    return codec.encode_lines(lines)[0] + codec.indent_ids(rollout.snippet[t])


def test_rollouts_see_what_a_full_forward_sees(world):
    model, _, codec, corpus = world
    groups = sample_thoughts(model, codec, corpus.snippets[:4], corpus.decisions[:4], repeats=3, max_thought_tokens=6,
                             seed=1)
    rollouts = [r for group in groups for r in group]
    assert sum(len(r.thoughts) for r in rollouts) >= 5                  # the model does think
    comment = codec.comment_mask
    for rollout in rollouts:
        assert set(rollout.think_probs) == {t for t in range(len(rollout.snippet)) if t >= HEADER}
        for t, p_think in rollout.think_probs.items():
            with torch.no_grad():
                logits = model(torch.tensor([prefix_ids(codec, rollout, t)])).logits[0, -1]
            assert abs(float((logits.softmax(-1) * comment).sum()) - p_think) < 1e-4
        for thought in rollout.thoughts.values():
            assert thought.lstrip().startswith("#") and len(codec.content_ids(thought)) <= 6 + 1


def test_rollouts_are_deterministic_per_seed(world):
    model, _, codec, corpus = world
    first = sample_thoughts(model, codec, corpus.snippets[:3], corpus.decisions[:3], repeats=2, seed=5)
    again = sample_thoughts(model, codec, corpus.snippets[:3], corpus.decisions[:3], repeats=2, seed=5)
    assert [[r.thoughts for r in g] for g in first] == [[r.thoughts for r in g] for g in again]


def test_line_scores_match_token_logprobs(world):
    model, _, codec, corpus = world
    [[rollout]] = sample_thoughts(model, codec, corpus.snippets[:1], corpus.decisions[:1], seed=3)
    with torch.no_grad():
        scores = score_lines(model, codec, [rollout], corpus.decisions[:1])
    ids, spans = codec.encode_lines(rollout.lines)
    with torch.no_grad():
        per_token = token_logprobs(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        logits = model(torch.tensor([ids])).logits[0]
    k = 0
    for t, line in enumerate(rollout.snippet):
        if t in rollout.thoughts:
            start, end = spans[k]
            first = start + len(codec.indent_ids(rollout.thoughts[t]))
            assert scores.think[0, t] and abs(float(scores.latent[0, t]) - float(per_token[first - 1:end - 1].sum())) < 1e-4
            k += 1
        start, end = spans[k]
        first = start + len(codec.indent_ids(line))
        if corpus.decisions[0][t]:
            assert abs(float(scores.code[0, t]) - float(per_token[first - 1:end - 1].sum())) < 1e-4
            if t not in rollout.thoughts:
                p_comment = float((logits[first - 1].softmax(-1) * codec.comment_mask).sum())
                assert abs(float(scores.latent[0, t]) - torch.log1p(torch.tensor(-p_comment)).item()) < 1e-4
        else:
            assert scores.code[0, t] == 0 and not scores.decision[0, t]
        k += 1


def test_rewards_and_advantages():
    code = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    think = torch.tensor([[True, False, False], [False, False, True]])
    decision = torch.tensor([[False, True, True], [True, True, True]])
    assert line_rewards(code, think, decision, 0.5).tolist() == [[0.0, -2.0, -3.0], [-1.0, -1.0, -1.5]]
    assert line_rewards(code, think, decision, 0.5, "penalty_only").tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, -0.5]]
    returns = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    group = advantages(returns, "group", normalize=False)
    assert torch.allclose(group.sum(1), torch.zeros(2)) and group[0].tolist() == [-1.0, 0.0, 1.0]
    assert advantages(returns, "no_thought", torch.tensor([1.0, 0.0]), normalize=False)[1].tolist() == [0.0, 0.0, 6.0]
    assert torch.allclose(advantages(returns, "group").std(1), torch.ones(2), atol=1e-4)
    with pytest.raises(ConfigError, match="c = -0.1"):
        line_rewards(code, think, decision, -0.1)
    with pytest.raises(ConfigError, match="estep.baseline"):
        advantages(returns, "mean")


def test_boundary_scores():
    assert boundary_scores([{2, 5}], [{2, 6}]) == {"boundary_precision": 0.5, "boundary_recall": 0.5, "boundary_f1": 0.5}
    assert boundary_scores([set()], [{1}])["boundary_f1"] == 0.0


def test_a_large_penalty_teaches_q_to_stop_thinking(world):
    model, _, codec, corpus = world
    rates = []
    config = OmegaConf.create({**ESTEP, "reward": "penalty_only", "steps": 8})
    e_step(model, codec, corpus, config, c=1.0, seed=0, log=lambda step, metrics: rates.append(metrics["rate"]))
    assert rates[0] > 0.1 and sum(rates[-2:]) / 2 < rates[0] / 2, rates


def test_em_rounds_resume_to_the_same_model(world, tmp_path):
    model, tokenizer, codec, corpus = world
    config = OmegaConf.create({"estep": {**ESTEP, "steps": 2},
                               "midtrain": {"rounds": 2, "steps_per_round": 5, "batch_size": 4, "lr": 1e-3}})
    whole, rounds = em.ra3(model, tokenizer, codec, corpus, config, 0.05, tmp_path / "whole", 0, lambda m: None)
    assert len(rounds) == 2 and {"estep", "infused", "mstep_loss"} <= set(rounds[0])
    em.ra3(model, tokenizer, codec, corpus, OmegaConf.merge(config, {"midtrain": {"rounds": 1}}),
           0.05, tmp_path / "cut", 0, lambda m: None)
    resumed, _ = em.ra3(model, tokenizer, codec, corpus, config, 0.05, tmp_path / "cut", 0, lambda m: None)
    assert json.loads((tmp_path / "cut" / "round_1" / "metrics.json").read_text())["example"] == rounds[1]["example"]
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_model_that_never_thinks_has_equal_plain_and_elbo_nll(world):
    _, tokenizer, codec, corpus = world
    silent = build_model(tokenizer, hidden=32, layers=2, heads=2, seed=1)   # untrained: comment mass ~1/V per line
    result = heldout_nll(silent, codec, corpus, samples=1, max_thought_tokens=4, seed=0)
    assert result["thought_rate"] < 0.1
    assert abs(result["nll_elbo"] - result["nll_plain"]) < 0.05 * result["nll_plain"]


def test_bolt_style_resampling_infuses_without_training_q(world, tmp_path):
    model, tokenizer, codec, corpus = world
    config = OmegaConf.create({"estep": {**ESTEP, "method": "resample"},
                               "midtrain": {"rounds": 1, "steps_per_round": 2, "batch_size": 4, "lr": 1e-3}})
    _, [metrics] = em.ra3(model, tokenizer, codec, corpus, config, 0.05, tmp_path / "bolt", 0, lambda m: None)
    assert metrics["estep"] == [] and 0 < metrics["infused"]["rate"] <= 1


def test_the_no_thought_baseline_trains_q(world):
    model, _, codec, corpus = world
    seen = []
    config = OmegaConf.create({**ESTEP, "baseline": "no_thought", "steps": 2})
    q = e_step(model, codec, corpus, config, c=0.05, seed=0, log=lambda step, metrics: seen.append(metrics))
    assert len(seen) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in seen)
    assert any(not torch.equal(a, b) for a, b in zip(q.parameters(), model.parameters()))
