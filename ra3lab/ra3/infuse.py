"""Infusion: write q's thoughts into the whole corpus, one sampled rollout per snippet.

``method="sample"`` (RA3) keeps q's one sample. ``method="resample"`` is the BoLT-style E-step with
no RL: G samples from q, one kept with probability proportional to exp(return) under pi (the return
of ``estep.reward``, as the E-step would compute it), i.e. importance resampling towards the posterior
over thoughts.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from ra3lab.errors import check, check_choice
from ra3lab.lm import LineCodec
from ra3lab.ra3.estep import Corpus, Models, line_returns
from ra3lab.ra3.rollout import Rollout, sample_thoughts

METHODS = ("sample", "resample")


def infuse(q, codec: LineCodec, corpus: Corpus, seed: int, max_thought_tokens: int, temperature: float = 1.0,
           method: str = "sample", pi=None, c: float = 0.0, group_size: int = 8, batch_size: int = 64,
           estep: DictConfig | None = None) -> list[Rollout]:
    """One rollout per snippet of ``corpus`` (in order), batched ``batch_size`` rows at a time; ``resample``
    weighs q's samples by the returns of ``estep`` (its reward, coefficients and temperature); q looks
    ``estep.lookahead`` lines ahead."""
    check_choice("infuse.method", method, METHODS)
    check(method == "sample" or (pi is not None and estep is not None), "infuse.method", method,
          "resampling needs pi and the E-step config (its reward) to weigh q's samples")
    repeats = 1 if method == "sample" else group_size
    per_batch = max(1, batch_size // repeats)
    generator = torch.Generator().manual_seed(seed)
    chosen: list[Rollout] = []
    for begin in range(0, len(corpus.snippets), per_batch):
        part = corpus.take(list(range(begin, min(begin + per_batch, len(corpus.snippets)))))
        groups = sample_thoughts(q, codec, part.snippets, part.decisions, repeats=repeats,
                                 max_thought_tokens=max_thought_tokens, temperature=temperature, seed=seed + begin,
                                 lookahead=0 if estep is None else estep.get("lookahead", 0))
        if method == "sample":
            chosen += [group[0] for group in groups]
            continue
        rollouts = [rollout for group in groups for rollout in group]
        decisions = [d for d in part.decisions for _ in range(repeats)]
        returns = line_returns(pi, codec, rollouts, decisions, c, estep, Models(ema=pi, reference=pi)).sum(1)
        picks = torch.multinomial(returns.view(-1, repeats).softmax(-1), 1, generator=generator).squeeze(1)
        chosen += [group[int(pick)] for group, pick in zip(groups, picks)]
    return chosen
