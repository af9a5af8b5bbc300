"""`ra3lab bench estep`: one whole E-step step with the prefix-sharing scorer (``score_lines(..., group_size=G)``)
against the same step with one full forward per rollout (``score_lines`` on each rollout alone), in one run.

A step is :func:`~ra3lab.ra3.estep.e_step`'s (reward ``ra3``, group baseline, normalised advantages): q (a fresh
copy of pi) samples G rollouts of each of ``snippets`` CodeWorld snippets (``sample_thoughts``, the same code and
seed for both sides, so the same rollouts); pi scores them for the reward; q scores its latent choices with
gradients, then backward, gradient clipping and one AdamW step. pi is a tiny Llama pre-trained briefly on
CodeWorld programs that all carry intent comments, so that it thinks. Setup (tokenizer, pre-training, corpus) is
not timed, nor one warm-up step of each side.

Units: times in seconds per step (wall clock, ``time.perf_counter``), the mean over ``steps`` steps, each step
timed for ours then the peer or the other way round, alternately; log-likelihoods in nats; ``speedup`` = peer
seconds / ours; tokens: ids of ``rollout_ids`` fed to a scorer, pi's view and q's, summed over the timed steps.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import fields
from functools import partial

import torch

from ra3lab import log
from ra3lab.errors import check
from ra3lab.lm import LineCodec, build_model, train_ntp, train_tokenizer
from ra3lab.ra3.likelihood import LineScores, score_lines, shared_prefix_lengths
from ra3lab.ra3.reward import advantages, line_rewards, returns_of
from ra3lab.ra3.rollout import rollout_ids, sample_thoughts

VOCAB_SIZE = 512
HEADS = 4
PENALTY = 0.05              # c, the paper's default
LR = 3e-4                   # q's learning rate (experiments/codeworld_ra3.yaml)
TARGET_SPEEDUP = 3
LOGLIK_TOLERANCE = 1e-4     # the largest |ours - peer| log-likelihood (nats) the benchmark accepts
PHASES = ("rollout", "scoring", "update")


def _validate(**values) -> None:
    least = {"G": 2, "snippets": 1, "steps": 1, "hidden": 2 * HEADS, "layers": 1, "pretrain_programs": 1,
             "pretrain_steps": 1, "max_thought_tokens": 1, "lookahead": 0, "seed": 0}
    for field, low in least.items():
        value = values[field]
        check(isinstance(value, int) and not isinstance(value, bool) and value >= low, field, value,
              f"must be an integer >= {low}")
    check(values["hidden"] % (2 * HEADS) == 0, "hidden", values["hidden"], f"must be a multiple of {2 * HEADS} "
          f"({HEADS} heads)")
    temperature = values["temperature"]
    check(isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature > 0,
          "temperature", temperature, "must be a number > 0")


def one_per_rollout(model, codec: LineCodec, rollouts, decisions, **options) -> LineScores:
    """The peer: :func:`score_lines` of each rollout alone (one full forward of its ids), stacked to (R, T)."""
    rows = [score_lines(model, codec, [rollout], [decision], **options)
            for rollout, decision in zip(rollouts, decisions)]
    shape = (len(rows), max(row.code.shape[1] for row in rows))
    stacked = []
    for field in fields(LineScores):
        grid = torch.zeros(shape, dtype=getattr(rows[0], field.name).dtype)
        for r, row in enumerate(rows):
            grid[r, :row.code.shape[1]] = getattr(row, field.name)[0]
        stacked.append(grid)
    return LineScores(*stacked)


def trie_size(rows: list[list[int]]) -> int:
    """Distinct prefixes of the id rows: the tokens a scorer sharing every common prefix (a trie) would compute."""
    return len({tuple(row[:k]) for row in rows for k in range(1, len(row) + 1)})


def _step(scorer, pi, codec: LineCodec, batch, G: int, options: dict, seed: int) -> tuple[list[float], dict]:
    """One E-step step from a fresh q = pi; returns the seconds of each phase and what it computed."""
    q = copy.deepcopy(pi)
    optimizer = torch.optim.AdamW(q.parameters(), lr=LR)
    begin = time.perf_counter()
    groups = sample_thoughts(q, codec, batch.snippets, batch.decisions, repeats=G, seed=seed, **options)
    rollouts = [rollout for group in groups for rollout in group]
    decisions = [d for d in batch.decisions for _ in range(G)]
    rolled = time.perf_counter()
    with torch.no_grad():
        scores = scorer(pi, codec, rollouts, decisions)
        returns = returns_of(line_rewards(scores.code, scores.think, scores.decision, PENALTY, "ra3"), "total")
        advantage = advantages(returns.view(-1, G), "group", None, True).view(-1)         # (R,)
    scored = time.perf_counter()
    q.train()
    latent = scorer(q, codec, rollouts, decisions, temperature=options["temperature"], view="q").latent
    loss = -(advantage[:, None] * latent).sum(1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(q.parameters(), 1.0)
    optimizer.step()
    end = time.perf_counter()
    computed = {"rollouts": rollouts, "code": scores.code, "latent": latent.detach(), "think": scores.think,
                "decision": scores.decision}
    return [rolled - begin, scored - rolled, end - scored], computed


def run(G: int = 8, snippets: int = 4, steps: int = 3, hidden: int = 96, layers: int = 3,
        pretrain_programs: int = 200, pretrain_steps: int = 150, max_thought_tokens: int = 12,
        temperature: float = 1.0, lookahead: int = 0, seed: int = 0, progress: bool = True) -> dict:
    """Time a whole E-step step, ours against the peer, on the same rollouts; returns a flat JSON-able dict.

    G: rollouts per snippet; snippets: snippets per step; steps: timed steps (each on new snippets); hidden,
    layers: pi's width and depth (4 heads); pretrain_programs, pretrain_steps: pi's pre-training (batch 16, lr
    1e-2); max_thought_tokens, temperature, lookahead: q's sampling (estep.*).
    """
    _validate(**locals())
    from ra3lab.codeworld import CodeWorld
    from ra3lab.studies.stages.sources import as_corpus

    programs = CodeWorld(comment_fraction=1.0).sample(pretrain_programs, seed=seed)
    tokenizer = train_tokenizer([line for p in programs for line in p.lines()], vocab_size=VOCAB_SIZE)
    codec = LineCodec(tokenizer)
    pi = build_model(tokenizer, hidden=hidden, layers=layers, heads=HEADS, seed=seed)
    train_ntp(pi, [codec.encode_lines(p.lines())[0] for p in programs], steps=pretrain_steps, batch_size=16, lr=1e-2,
              seed=seed)
    data = as_corpus(CodeWorld(comment_fraction=0.0).sample(snippets * steps, seed=seed + 1))
    options = {"max_thought_tokens": max_thought_tokens, "temperature": temperature, "lookahead": lookahead}
    sides = {"ours": partial(score_lines, group_size=G), "peer": one_per_rollout}

    for scorer in sides.values():                       # warm-up on one snippet: first-call allocations are not timed
        _step(scorer, pi, codec, data.take([0]), G, options, seed)
    seconds = {side: torch.zeros(steps, len(PHASES), dtype=torch.float64) for side in sides}
    max_diff, identical, tokens, forwarded, distinct, thoughts, lines = 0.0, True, 0, 0, 0, 0, 0
    for k in log.progress(range(steps), "bench estep", "timed steps", enabled=progress):
        batch = data.take(list(range(k * snippets, (k + 1) * snippets)))
        order = list(sides) if k % 2 == 0 else list(sides)[::-1]     # alternate, so load changes hit both
        out = {}
        for side in order:
            phase_seconds, out[side] = _step(sides[side], pi, codec, batch, G, options, seed * 100_003 + k)
            seconds[side][k] = torch.tensor(phase_seconds)
        ours, peer = out["ours"], out["peer"]
        identical &= [(r.thoughts, r.thought_ids) for r in ours["rollouts"]] == \
                     [(r.thoughts, r.thought_ids) for r in peer["rollouts"]]
        max_diff = max(max_diff, *(float((ours[key] - peer[key]).abs().max()) for key in ("code", "latent")))
        for view in ("pi", "q"):
            rows = [rollout_ids(codec, rollout, view)[0] for rollout in ours["rollouts"]]
            tokens += sum(map(len, rows))
            forwarded += sum(map(len, rows)) - (G - 1) * sum(shared_prefix_lengths(rows, G))
            distinct += sum(trie_size(rows[g:g + G]) for g in range(0, len(rows), G))
        thoughts += int(ours["think"].sum())
        lines += int(ours["decision"].sum())

    split = {side: (seconds[side].sum(0) / steps).tolist() for side in sides}      # seconds per step, per phase
    total = {side: sum(split[side]) for side in sides}
    speedup = total["peer"] / total["ours"]
    agree = max_diff <= LOGLIK_TOLERANCE
    return {
        "G": G, "snippets": snippets, "steps": steps, "hidden": hidden, "layers": layers, "heads": HEADS,
        "pretrain_programs": pretrain_programs, "pretrain_steps": pretrain_steps,
        "max_thought_tokens": max_thought_tokens, "temperature": temperature, "lookahead": lookahead, "seed": seed,
        "vocab_size": len(tokenizer), "params": sum(p.numel() for p in pi.parameters()),
        "ours_s_per_step": total["ours"], "peer_s_per_step": total["peer"], "speedup": speedup,
        **{f"{side}_{phase}_s": split[side][i] for side in sides for i, phase in enumerate(PHASES)},
        "scoring_update_speedup": sum(split["peer"][1:]) / sum(split["ours"][1:]),
        "amdahl_bound": total["peer"] / split["peer"][0],
        "tokens_scored": tokens, "shared_prefix_fraction": 1 - forwarded / tokens,
        "trie_shared_fraction": 1 - distinct / tokens,
        "thought_rate": thoughts / lines, "rollouts_identical": identical,
        "max_abs_loglik_diff": max_diff, "logliks_agree": agree,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(speedup >= TARGET_SPEEDUP and agree),
        "notes": ("A step: rollout (sample_thoughts, the same code in both), scoring (pi scores the rollouts for "
                  "the reward; rewards, returns, advantages), update (q scores its latent choices with gradients; "
                  "backward, clip, AdamW step). ours = score_lines(group_size=G): per snippet one forward over the "
                  "ids its G rollouts share, the KV cache repeated, one batched forward over the continuations; "
                  "peer = score_lines on each rollout alone, one full forward per rollout. Times: mean per step "
                  "over the timed steps, each side from a fresh q = pi on the same snippets and seed. "
                  "tokens_scored counts the ids both score (pi's and q's view); shared_prefix_fraction: the share "
                  "of them ours computes once per group instead of once per rollout; trie_shared_fraction: the share "
                  "a scorer sharing every common prefix of a group's rollouts (a trie) would save, the most any prefix "
                  "sharing can. amdahl_bound = the peer's "
                  "seconds / its rollout seconds, the speedup if scoring and update took no time (the rollout is "
                  "the same code in both). max_abs_loglik_diff: over pi's code and q's latent scores, every "
                  "rollout and line."),
    }
