"""RA3's pieces on a tiny real model: rollouts through the shared KV cache, line scores, the reward,
the E-step's learning signal, and resumable EM rounds."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf

from ra3lab.codeworld import CodeWorld
from ra3lab.errors import ConfigError
from ra3lab.lm import build_model, token_logprobs
from ra3lab.ra3 import em
from ra3lab.ra3.estep import Corpus, EStepConfig, e_step
from ra3lab.ra3.evaluate import elbo_terms, heldout_nll
from ra3lab.ra3.infuse import infuse
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import boundary_scores, names_intent, names_next_lines
from ra3lab.ra3.reward import advantages, line_rewards, returns_of
from ra3lab.ra3.rollout import Rollout, rollout_ids, sample_thoughts

HEADER = 2
ESTEP = EStepConfig(steps=6, snippets_per_step=3, group_size=4, max_thought_tokens=6, lr=3e-3)
MIDTRAIN = {"batch_size": 4, "lr": 1e-3}


@pytest.fixture(scope="module")
def world(thinking_model):
    """The tiny model that writes intent comments (conftest), with a corpus of plain snippets to think in."""
    model, tokenizer, codec = thinking_model
    plain = CodeWorld(comment_fraction=0.0).sample(12, seed=1)
    snippets = [p.lines(comments=False) for p in plain]
    corpus = Corpus(snippets, [[t >= HEADER for t in range(len(s))] for s in snippets],
                    [{HEADER + b for b in p.boundaries} for p in plain])
    return model, tokenizer, codec, corpus


def test_rollouts_see_what_a_full_forward_sees(world):
    model, _, codec, corpus = world
    groups = sample_thoughts(model, codec, corpus.snippets[:4], corpus.decisions[:4], repeats=3, max_thought_tokens=6,
                             seed=1)
    rollouts = [r for group in groups for r in group]
    assert sum(len(r.thoughts) for r in rollouts) >= 5                  # the model does think
    comment = codec.comment_mask
    for rollout in rollouts:
        assert set(rollout.think_probs) == {t for t in range(len(rollout.snippet)) if t >= HEADER}
        assert set(rollout.log_q) == set(rollout.think_probs) and set(rollout.thought_ids) == set(rollout.thoughts)
        ids, places = rollout_ids(codec, rollout)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        for t, p_think in rollout.think_probs.items():
            first, _, thought = places[t]
            decide = (thought[0] if thought else first) - 1      # the position after the line's indent
            assert abs(float((logits[decide].softmax(-1) * comment).sum()) - p_think) < 1e-4
            if thought is None:
                assert abs(rollout.log_q[t] - float(torch.log1p(torch.tensor(-p_think)))) < 1e-4
        for t, thought in rollout.thoughts.items():
            sampled = rollout.thought_ids[t]
            assert thought.lstrip().startswith("#") and codec.comment_mask[sampled[0]] and len(sampled) <= 6
            start, stop, _ = (*places[t][2], None)
            assert ids[start:start + len(sampled)] == list(sampled)
            log_q = logits[start - 1:start - 1 + len(sampled)].log_softmax(-1).gather(1, torch.tensor(sampled)[:, None])
            assert abs(float(log_q.sum()) - rollout.log_q[t]) < 1e-4     # the sampler's log q is the model's
            assert codec.newline_mask[ids[stop - 1]]                      # closed, by q or by a forced newline


def test_rollouts_are_deterministic_per_seed(world):
    model, _, codec, corpus = world
    first = sample_thoughts(model, codec, corpus.snippets[:3], corpus.decisions[:3], repeats=2, seed=5)
    again = sample_thoughts(model, codec, corpus.snippets[:3], corpus.decisions[:3], repeats=2, seed=5)
    assert [[r.thoughts for r in g] for g in first] == [[r.thoughts for r in g] for g in again]
    other = sample_thoughts(model, codec, corpus.snippets[:3], corpus.decisions[:3], repeats=2, seed=6)
    assert [[r.thoughts for r in g] for g in other] != [[r.thoughts for r in g] for g in first]


def test_a_rollout_is_the_same_whatever_snippets_share_its_batch(world):
    """Each rollout draws its own random numbers: the last two snippets sampled alone, at their places in the
    batch, think exactly as in the whole batch (as when a second process takes them)."""
    model, _, codec, corpus = world
    whole = sample_thoughts(model, codec, corpus.snippets[:4], corpus.decisions[:4], repeats=3, seed=5)
    part = sample_thoughts(model, codec, corpus.snippets[2:4], corpus.decisions[2:4], repeats=3, seed=5, places=[2, 3])
    assert any(r.thoughts for g in whole[2:] for r in g)                      # something to compare
    assert [[r.thoughts for r in g] for g in part] == [[r.thoughts for r in g] for g in whole[2:]]
    for alone, together in zip((r for g in part for r in g), (r for g in whole[2:] for r in g)):
        assert alone.log_q.keys() == together.log_q.keys()                    # log q up to the batch's float sums
        assert list(alone.log_q.values()) == pytest.approx(list(together.log_q.values()), abs=1e-4)


def test_line_scores_match_token_logprobs(world):
    model, _, codec, corpus = world
    [[rollout]] = sample_thoughts(model, codec, corpus.snippets[:1], corpus.decisions[:1], max_thought_tokens=3, seed=3)
    assert rollout.thoughts, "the case needs a thought"
    with torch.no_grad():
        scores = score_lines(model, codec, [rollout], corpus.decisions[:1])
        hot = score_lines(model, codec, [rollout], corpus.decisions[:1], temperature=2.0)
    ids, places = rollout_ids(codec, rollout)
    with torch.no_grad():
        per_token = token_logprobs(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        logits = model(torch.tensor([ids])).logits[0]
    for t, (first, end, thought) in enumerate(places):
        if not corpus.decisions[0][t]:
            assert scores.code[0, t] == 0 and not scores.decision[0, t]
            continue
        assert abs(float(scores.code[0, t]) - float(per_token[first - 1:end - 1].sum())) < 1e-4
        if thought is not None:
            start, stop = thought
            sampled = len(rollout.thought_ids[t])
            assert scores.think[0, t]
            assert abs(float(scores.thought[0, t]) - float(per_token[start - 1:stop - 1].sum())) < 1e-4
            assert abs(float(scores.latent[0, t]) - float(per_token[start - 1:start - 1 + sampled].sum())) < 1e-4
            tempered = (logits[start - 1:start - 1 + sampled] / 2.0).log_softmax(-1)
            expected = tempered.gather(1, torch.tensor(ids[start:start + sampled])[:, None]).sum()
            assert abs(float(hot.latent[0, t]) - float(expected)) < 1e-4
        else:
            p_comment = float((logits[first - 1].softmax(-1) * codec.comment_mask).sum())
            assert scores.thought[0, t] == 0
            assert abs(float(scores.latent[0, t]) - torch.log1p(torch.tensor(-p_comment)).item()) < 1e-4


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
    assert boundary_scores([{2, 5}], [{2, 6}]) == {"boundary_precision": 0.5, "boundary_recall": 0.5,
                                                   "boundary_f1": 0.5}
    assert boundary_scores([set()], [{1}])["boundary_f1"] == 0.0


@pytest.mark.parametrize(("settings", "field"), [
    ({"group_size": 1}, "estep.group_size"), ({"max_thought_tokens": 0}, "estep.max_thought_tokens"),
    ({"steps": 2.5}, "estep.steps"), ({"lookahead": -1}, "estep.lookahead"), ({"temperature": 0}, "estep.temperature"),
    ({"lr": float("nan")}, "estep.lr"), ({"ema_decay": 1.0}, "estep.ema_decay"), ({"kl_coef": -1}, "estep.kl_coef"),
    ({"method": "beam"}, "estep.method"), ({"reward": "bleu"}, "estep.reward"),
    ({"normalize": "yes"}, "estep.normalize"), ({"entropy_coef": 0.1, "method": "resample"}, "estep.entropy_coef")])
def test_a_bad_estep_setting_is_refused_by_its_field(settings, field):
    with pytest.raises(ConfigError) as error:
        EStepConfig(**settings)
    assert error.value.field == field


def test_an_estep_block_becomes_one_config():
    block = OmegaConf.create({"steps": 3, "reward": "rlp", "lookahead": 2})
    assert EStepConfig.of(block) == replace(EStepConfig(), steps=3, reward="rlp", lookahead=2)
    with pytest.raises(ConfigError) as error:
        EStepConfig.of({"stepz": 3})
    assert error.value.field == "estep.stepz"


def test_a_large_penalty_teaches_q_to_stop_thinking(world):
    model, _, codec, corpus = world
    rates = []
    config = replace(ESTEP, reward="penalty_only", steps=8)
    e_step(model, codec, corpus, config, c=1.0, seed=0, log=lambda step, metrics: rates.append(metrics["rate"]))
    assert rates[0] > 0.1 and sum(rates[-2:]) / 2 < rates[0] / 2, rates


def test_em_rounds_resume_to_the_same_model(world, tmp_path):
    model, tokenizer, codec, corpus = world
    config = OmegaConf.create({"midtrain": {**MIDTRAIN, "rounds": 2, "steps_per_round": 5}})
    estep = replace(ESTEP, steps=2)
    whole, rounds = em.ra3(model, tokenizer, codec, corpus, config, estep, 0.05, tmp_path / "whole", 0, lambda m: None)
    assert len(rounds) == 2 and {"estep", "infused", "mstep_loss"} <= set(rounds[0])
    em.ra3(model, tokenizer, codec, corpus, OmegaConf.merge(config, {"midtrain": {"rounds": 1}}), estep,
           0.05, tmp_path / "cut", 0, lambda m: None)
    resumed, _ = em.ra3(model, tokenizer, codec, corpus, config, estep, 0.05, tmp_path / "cut", 0, lambda m: None)
    assert json.loads((tmp_path / "cut" / "round_1" / "metrics.json").read_text())["example"] == rounds[1]["example"]
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_model_that_never_thinks_has_equal_plain_and_elbo_nll(world):
    _, tokenizer, codec, corpus = world
    silent = build_model(tokenizer, hidden=32, layers=2, heads=2, seed=1)   # untrained: comment mass ~1/V per line
    result = heldout_nll(silent, codec, corpus, samples=1, max_thought_tokens=4, seed=0)
    assert result["elbo_thought_rate"] < 0.1
    assert abs(result["nll_elbo"] - result["nll_plain"]) < 0.05 * result["nll_plain"]


def test_bolt_style_resampling_infuses_without_training_q(world, tmp_path):
    model, tokenizer, codec, corpus = world
    config = OmegaConf.create({"midtrain": {**MIDTRAIN, "rounds": 1, "steps_per_round": 2}})
    _, [metrics] = em.ra3(model, tokenizer, codec, corpus, config, replace(ESTEP, method="resample"), 0.05,
                          tmp_path / "bolt", 0, lambda m: None)
    assert metrics["estep"] == [] and 0 < metrics["infused"]["rate"] <= 1


def test_the_no_thought_baseline_trains_q(world):
    model, _, codec, corpus = world
    seen = []
    config = replace(ESTEP, baseline="no_thought", steps=2)
    q = e_step(model, codec, corpus, config, c=0.05, seed=0, log=lambda step, metrics: seen.append(metrics))
    assert len(seen) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in seen)
    assert any(not torch.equal(a, b) for a, b in zip(q.parameters(), model.parameters()))


def test_the_elbo_bounds_the_exact_marginal_and_meets_it_at_the_true_posterior(world):
    """One snippet with two decision lines and thoughts of one token: every thought pattern q can draw is
    enumerated, so the marginal over them, the exact expectation under q and the posterior are computed exactly."""
    model, _, codec, corpus = world
    snippet, decisions = tuple(corpus.snippets[0][:4]), [False, False, True, True]
    indent = codec.split(snippet[2])[0]
    choices = [None, *codec.comment_mask.nonzero().squeeze(1).tolist()]
    patterns = list(itertools.product(choices, repeat=2))

    def rollout(pattern, log_q=None) -> Rollout:
        ids = {t: (c,) for t, c in zip((2, 3), pattern) if c is not None}
        return Rollout(snippet, {t: indent + codec.decode(i) for t, i in ids.items()}, thought_ids=ids,
                       log_q={} if log_q is None else {2: log_q, 3: 0.0})

    def reference_log_q(pattern) -> float:         # q = the model, thoughts capped at one token, by hand
        ids, places = rollout_ids(codec, rollout(pattern))
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        total = 0.0
        for t, c in zip((2, 3), pattern):
            first, _, thought = places[t]
            if c is None:
                total += float(torch.log1p(-logprobs[first - 1, codec.comment_mask].exp().sum()))
            else:
                total += float(logprobs[thought[0] - 1, c])
        return total

    log_q = torch.tensor([reference_log_q(p) for p in patterns], dtype=torch.float64)
    assert abs(float(log_q.exp().sum()) - 1) < 1e-4                 # the enumeration covers q's support
    with torch.no_grad():
        scores = score_lines(model, codec, [rollout(p) for p in patterns], [decisions] * len(patterns))
    joint = (scores.code + scores.thought).double().sum(1)
    marginal = float(joint.logsumexp(0))
    with torch.no_grad():
        terms = elbo_terms(model, codec, [rollout(p, float(q)) for p, q in zip(patterns, log_q)],
                           [decisions] * len(patterns))
    exact_elbo = float((log_q.exp() * terms).sum())
    assert exact_elbo < marginal - 1e-3, (exact_elbo, marginal)     # a bound, strictly below: q is not the posterior
    with torch.no_grad():
        at_posterior = elbo_terms(model, codec, [rollout(p, float(j) - marginal) for p, j in zip(patterns, joint)],
                                  [decisions] * len(patterns))
    assert torch.allclose(at_posterior, torch.full_like(at_posterior, marginal), atol=1e-4)

    [sampled] = sample_thoughts(model, codec, [list(snippet)], [decisions], repeats=400, max_thought_tokens=1, seed=0)
    index = {p: i for i, p in enumerate(patterns)}
    for r in sampled:                                                # the sampler records q's own probability
        i = index[tuple(r.thought_ids.get(t, (None,))[0] for t in (2, 3))]
        assert abs(sum(r.log_q.values()) - float(log_q[i])) < 1e-4
    corpus_one = Corpus([list(snippet)], [decisions])
    result = heldout_nll(model, codec, corpus_one, samples=400, max_thought_tokens=1, seed=0)
    tokens = result["code_tokens"]
    with torch.no_grad():
        spread = elbo_terms(model, codec, sampled, [decisions] * len(sampled)).std().item() / 400 ** 0.5
    assert abs(result["nll_elbo"] + exact_elbo / tokens) < 4 * spread / tokens + 1e-6
    assert result["nll_elbo"] > -marginal / tokens                   # nll_elbo >= the exact marginal NLL


def test_resampling_weighs_samples_by_the_configured_reward(world):
    model, _, codec, corpus = world
    part = corpus.take([0, 1, 2, 3])
    groups = sample_thoughts(model, codec, part.snippets, part.decisions, repeats=4, max_thought_tokens=6, seed=7)

    def picked(reward: str, c: float) -> list[int]:
        chosen = infuse(model, codec, part, 7, replace(ESTEP, reward=reward, method="resample"), pi=model, c=c)
        return [len(r.thoughts) for r in chosen]

    fewest = [min(len(r.thoughts) for r in group) for group in groups]
    assert any(len({len(r.thoughts) for r in group}) > 1 for group in groups)      # the choice matters
    assert picked("penalty_only", 50.0) == fewest                                      # only the penalty counts
    assert picked("ra3", 0.0) != fewest                                                # the likelihood counts


@pytest.mark.parametrize("settings", [{"reward": "quiet_star"}, {"reward": "rlp", "ema_decay": 0.5},
                                      {"reward": "latro", "kl_coef": 0.5}, {"returns": "to_go"},
                                      {"entropy_coef": 0.1, "baseline": "none"}])
def test_every_reward_variant_and_return_mode_trains_q(world, settings):
    model, _, codec, corpus = world
    seen = []
    config = replace(ESTEP, **settings, steps=2)
    q = e_step(model, codec, corpus, config, c=0.05, seed=0, log=lambda step, metrics: seen.append(metrics))
    assert len(seen) == 2 and all(torch.isfinite(torch.tensor([m["loss"], m["reward"]])).all() for m in seen)
    assert any(not torch.equal(a, b) for a, b in zip(q.parameters(), model.parameters()))


def test_rewards_to_go_credit_a_choice_with_what_follows_it():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    assert returns_of(rewards).tolist() == [6.0, 4.0]
    assert returns_of(rewards, "to_go").tolist() == [[6.0, 5.0, 3.0], [4.0, 4.0, 5.0]]
    with pytest.raises(ConfigError, match="estep.returns"):
        returns_of(rewards, "discounted")


def test_ra3_without_thoughts_trains_exactly_as_ntp(world, tmp_path):
    """No decision line, no E-step: every round infuses the plain corpus, so RA3's M-steps must be NTP's."""
    model, tokenizer, codec, corpus = world
    silent = Corpus(corpus.snippets, [[False] * len(s) for s in corpus.snippets])
    config = OmegaConf.create({"midtrain": {**MIDTRAIN, "rounds": 2, "steps_per_round": 3}})
    ra3_model, rounds = em.ra3(model, tokenizer, codec, silent, config, replace(ESTEP, steps=0), 0.05,
                               tmp_path / "ra3", 0, lambda m: None)
    assert all(r["infused"]["rate"] == 0 for r in rounds)
    ntp_model = em.ntp(model, tokenizer, codec, silent.snippets, config, tmp_path / "ntp", 0)
    for a, b in zip(ra3_model.parameters(), ntp_model.parameters()):
        assert torch.equal(a, b)
    longer = em.ntp(model, tokenizer, codec, silent.snippets, OmegaConf.merge(config, {"midtrain": {"rounds": 3}}),
                    tmp_path / "ntp3", 0)
    assert any(not torch.equal(a, b) for a, b in zip(longer.parameters(), ntp_model.parameters()))


def test_what_thoughts_mention_is_measured_against_the_lines_they_precede():
    snippet = ("def f(xs, k):", '    """Square."""', "    ys = [x * x for x in xs]", "    return sorted(ys)")
    copies = Rollout(snippet, {2: "    # ys squares", 3: "    # sorted"})
    vague = Rollout(snippet, {2: "    # now the work", 3: "    # ys again"})        # ys is no longer new at line 3
    assert names_next_lines([copies], window=1) == 1.0 and names_next_lines([vague], window=1) == 0.0
    intents = [{2: "replace every number by its square", 3: "sort the list"}]
    rollout = Rollout(snippet, {2: "    # replace every number by its", 3: "    # sort it"})
    assert names_intent([rollout], intents) == 0.5
    assert names_next_lines([Rollout(snippet)], window=1) == 0.0


def test_a_posterior_style_q_records_its_own_log_probability_and_keeps_the_bound(world):
    model, _, codec, corpus = world
    part = corpus.take([0, 1])
    groups = sample_thoughts(model, codec, part.snippets, part.decisions, repeats=3, max_thought_tokens=4, seed=2,
                             lookahead=2)
    rollouts = [r for g in groups for r in g]
    decisions = [d for d in part.decisions for _ in range(3)]
    with torch.no_grad():
        seen = score_lines(model, codec, rollouts, decisions, view="q").latent.sum(1)
        blind = score_lines(model, codec, rollouts, decisions).latent.sum(1)
    recorded = torch.tensor([sum(r.log_q.values()) for r in rollouts])
    assert torch.allclose(seen, recorded, atol=1e-3) and not torch.allclose(blind, recorded, atol=1e-3)
    posterior = heldout_nll(model, codec, part, samples=2, max_thought_tokens=4, seed=0, lookahead=2)
    assert posterior["nll_elbo"] > 0 and posterior["nll_plain"] == heldout_nll(model, codec, part, 2, 4, 0)["nll_plain"]
    with pytest.raises(ConfigError, match="estep.lookahead"):
        sample_thoughts(model, codec, part.snippets, part.decisions, lookahead=-1)


def test_grouped_scoring_shares_each_snippets_prefix_and_matches_one_forward_per_batch(world):
    model, _, codec, corpus = world
    G, part = 4, corpus.take(list(range(6)))
    groups = sample_thoughts(model, codec, part.snippets, part.decisions, repeats=G, max_thought_tokens=6, seed=1,
                             temperature=0.7, lookahead=2)
    first = [sum(HEADER in r.thoughts for r in group) for group in groups]
    assert 0 in first and any(first), "the case needs groups where some rollouts think at the first decision line"
    rollouts = [r for group in groups for r in group]
    decisions = [d for d in part.decisions for _ in range(G)]
    for view in ("pi", "q"):
        with torch.no_grad():
            one = score_lines(model, codec, rollouts, decisions, 0.7, view)
            shared = score_lines(model, codec, rollouts, decisions, 0.7, view, group_size=G)
        for name in ("code", "thought", "latent"):
            assert torch.allclose(getattr(shared, name), getattr(one, name), atol=1e-4, rtol=0), (view, name)
        for name in ("think", "decision", "code_tokens"):
            assert torch.equal(getattr(shared, name), getattr(one, name))
    gradients = []
    for group_size in (1, G):
        model.zero_grad(set_to_none=True)
        score_lines(model, codec, rollouts, decisions, 0.7, "q", group_size=group_size).latent.sum().backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        model.zero_grad(set_to_none=True)
    assert float((gradients[1] - gradients[0]).abs().max()) <= 1e-4 * float(gradients[0].abs().max())
    with pytest.raises(ConfigError, match="group_size"):
        score_lines(model, codec, rollouts[:-1], decisions[:-1], group_size=G)
