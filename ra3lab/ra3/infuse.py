"""Infusion: write q's thoughts into the whole corpus, one sampled rollout per snippet.

With ``estep.method="rl"`` (RA3, and infuse0) q's one sample is kept. With ``"resample"`` (the BoLT-style
E-step with no RL) G = ``estep.group_size`` samples are drawn from q, and one is kept with probability
proportional to exp(return) under pi (the return of ``estep.reward``, as the E-step would compute it), i.e.
importance resampling towards the posterior over thoughts.
"""

from __future__ import annotations

import torch

from ra3lab.errors import check
from ra3lab.lm import LineCodec
from ra3lab.ra3.estep import Corpus, EStepConfig, Models, line_returns
from ra3lab.ra3.rollout import Rollout, sample_thoughts


def infuse(q, codec: LineCodec, corpus: Corpus, seed: int, estep: EStepConfig, pi=None, c: float = 0.0,
           batch_size: int = 64) -> list[Rollout]:
    """One rollout per snippet of ``corpus`` (in order), batched ``batch_size`` rows at a time, q sampling as
    ``estep`` says (its L_z, temperature and lookahead); resampling weighs q's samples by their returns under
    ``pi`` with penalty ``c``."""
    resample = estep.method == "resample"
    check(not resample or pi is not None, "estep.method", estep.method,
          "resampling needs pi to weigh q's samples: pass pi")
    repeats = estep.group_size if resample else 1
    per_batch = max(1, batch_size // repeats)
    generator = torch.Generator().manual_seed(seed)
    chosen: list[Rollout] = []
    for begin in range(0, len(corpus.snippets), per_batch):
        part = corpus.take(list(range(begin, min(begin + per_batch, len(corpus.snippets)))))
        groups = sample_thoughts(q, codec, part.snippets, part.decisions, repeats=repeats,
                                 max_thought_tokens=estep.max_thought_tokens, temperature=estep.temperature,
                                 seed=seed + begin, lookahead=estep.lookahead)
        if not resample:
            chosen += [group[0] for group in groups]
            continue
        rollouts = [rollout for group in groups for rollout in group]
        decisions = [d for d in part.decisions for _ in range(repeats)]
        returns = line_returns(pi, codec, rollouts, decisions, c, estep, Models(ema=pi, reference=pi)).sum(1)
        picks = torch.multinomial(returns.view(-1, repeats).softmax(-1), 1, generator=generator).squeeze(1)
        chosen += [group[int(pick)] for group, pick in zip(groups, picks)]
    return chosen
