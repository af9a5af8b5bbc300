"""Held-out evaluation of a mid-trained model: code likelihood with and without thinking, and pass@1.

- ``nll_plain``: -log p(code, no thought anywhere) per code token: exact, and the NTP likelihood.
- ``nll_elbo``: -E_q[log p(code, z) - log q(z)] per code token with q = the model itself, thinking
  as it would at inference (prior-style); an upper bound on -log p(code) estimated from
  ``samples`` rollouts per snippet. RA3 beats NTP on likelihood when its ``nll_elbo`` is below
  NTP's ``nll_plain``.

Code tokens are the content tokens of decision lines (indents are context in both).
"""

from __future__ import annotations

import torch

from ra3lab.evaluation import SandboxPool, solved
from ra3lab.lm import LineCodec
from ra3lab.ra3.estep import Corpus
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import thought_stats
from ra3lab.ra3.rollout import Rollout, sample_thoughts


@torch.no_grad()
def heldout_nll(model, codec: LineCodec, corpus: Corpus, samples: int, max_thought_tokens: int, seed: int,
                batch_size: int = 32) -> dict:
    """nll_plain, nll_elbo (nats per code token) and the thoughts the model writes on held-out snippets."""
    model.eval()
    plain_total = elbo_total = tokens = 0.0
    rollouts_all: list[Rollout] = []
    for begin in range(0, len(corpus.snippets), batch_size):
        part = corpus.take(list(range(begin, min(begin + batch_size, len(corpus.snippets)))))
        plain = score_lines(model, codec, [Rollout(tuple(s), {}, {}) for s in part.snippets], part.decisions)
        plain_total += float(plain.code.sum())
        tokens += float(plain.code_tokens.sum())
        groups = sample_thoughts(model, codec, part.snippets, part.decisions, repeats=samples,
                                 max_thought_tokens=max_thought_tokens, seed=seed + begin)
        rollouts = [rollout for group in groups for rollout in group]
        scores = score_lines(model, codec, rollouts, [d for d in part.decisions for _ in range(samples)])
        acts = scores.decision & ~scores.think
        elbo_total += float((scores.code.sum(1) - (scores.latent * acts).sum(1)).sum()) / samples
        rollouts_all += [group[0] for group in groups]
    stats = thought_stats(rollouts_all, corpus.decisions, codec, corpus.truth)
    return {"nll_plain": -plain_total / tokens, "nll_elbo": -elbo_total / tokens, "code_tokens": int(tokens),
            **{f"thought_{key}": value for key, value in stats.items()}}


def pass_at_1(model, tokenizer, tasks: list[dict], pool: SandboxPool, max_new_tokens: int) -> float:
    """Greedy pass@1 over ``tasks`` (HumanEval format), the model free to write comments as it goes."""
    return float(solved(model, tokenizer, tasks, pool, max_new_tokens).mean())
