"""Held-out code likelihood of a mid-trained model, with and without thinking.

- ``nll_plain``: -log p(code, no thought anywhere) per code token: exact, and the NTP likelihood.
- ``nll_elbo``: -E_q[log p(code, z) - log q(z)] per code token, an upper bound on -log p(code) estimated
  from ``samples`` rollouts of q per snippet. log p(code, z) scores exactly the tokens q sampled (a thought
  cut at its cap with its forced newline), and log q(z) is what the sampler recorded, so the bound holds
  whatever q is: the model itself thinking as at inference (the default), other weights, another
  temperature or a token cap. RA3 beats NTP on likelihood when its ``nll_elbo`` is below NTP's
  ``nll_plain``.

Code tokens are the content tokens of decision lines (indents are context in both).
"""

from __future__ import annotations

import torch

from ra3lab.errors import check
from ra3lab.lm import LineCodec
from ra3lab.ra3.estep import Corpus
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import thought_stats
from ra3lab.ra3.rollout import Rollout, sample_thoughts


def elbo_terms(model, codec: LineCodec, rollouts: list[Rollout], decisions: list[list[bool]]) -> torch.Tensor:
    """Tensor[R] (float64): log p(code, z) - log q(z) of each rollout under ``model``, with log q(z) summed from
    the rollout's ``log_q``, which must hold every decision line (rollouts as :func:`sample_thoughts` draws them)."""
    for rollout, lines in zip(rollouts, decisions):
        missing = [t for t, may in enumerate(lines) if may and t not in rollout.log_q]
        check(not missing, "rollouts", f"(no log q at lines {missing[:3]})",
              "score rollouts drawn by sample_thoughts, which record q's log-probability of every choice")
    scores = score_lines(model, codec, rollouts, decisions)
    joint = (scores.code + scores.thought).double().sum(1)
    return joint - torch.tensor([sum(rollout.log_q.values()) for rollout in rollouts], dtype=torch.float64)


@torch.no_grad()
def heldout_nll(model, codec: LineCodec, corpus: Corpus, samples: int, max_thought_tokens: int, seed: int,
                q=None, temperature: float = 1.0, lookahead: int = 0, batch_size: int = 32) -> dict:
    """nll_plain, nll_elbo (nats per code token) and ``elbo_thought_*``: the thoughts q wrote for it on
    held-out snippets; q defaults to ``model``, sampling at ``temperature`` with thoughts capped at
    ``max_thought_tokens``, prior-style unless it looks ``lookahead`` lines ahead (a posterior-style q, whose
    bound may be tighter)."""
    model.eval()
    q = model if q is None else q
    plain_total = elbo_total = tokens = 0.0
    rollouts_all: list[Rollout] = []
    for begin in range(0, len(corpus.snippets), batch_size):
        part = corpus.take(list(range(begin, min(begin + batch_size, len(corpus.snippets)))))
        plain = score_lines(model, codec, [Rollout(tuple(s)) for s in part.snippets], part.decisions)
        plain_total += float(plain.code.sum())
        tokens += float(plain.code_tokens.sum())
        groups = sample_thoughts(q, codec, part.snippets, part.decisions, repeats=samples,
                                 max_thought_tokens=max_thought_tokens, temperature=temperature, seed=seed + begin,
                                 lookahead=lookahead)
        rollouts = [rollout for group in groups for rollout in group]
        elbo_total += float(elbo_terms(model, codec, rollouts, [d for d in part.decisions for _ in range(samples)])
                            .sum()) / samples
        rollouts_all += [group[0] for group in groups]
    stats = thought_stats(rollouts_all, corpus.decisions, codec, corpus.truth)
    return {"nll_plain": -plain_total / tokens, "nll_elbo": -elbo_total / tokens, "code_tokens": int(tokens),
            **{f"elbo_thought_{key}": value for key, value in stats.items()}}
