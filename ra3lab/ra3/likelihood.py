"""Per-line log-likelihoods of rollouts: the code each line holds (pi, the reward) and the latent before it (q).

For rollout r and decision line t of its snippet:

- ``code[r, t]`` = log pi(a_t | s_t, z_t): the summed log-probabilities of line t's content tokens
  (its indent is context, fed whether or not a thought precedes it);
- ``latent[r, t]`` = log q(z_t | s_t): for a thought, the summed log-probabilities of the thought's
  content tokens (its first token's probability includes the choice to think); for no thought,
  log(1 - mass on comment tokens) at the position of line t's first content token.

Both read one forward pass over ``codec.encode_lines(rollout.lines)`` per rollout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ra3lab.lm import LineCodec
from ra3lab.lm.padding import pad
from ra3lab.ra3.rollout import Rollout


@dataclass
class LineScores:
    """Tensors[R, T] over rollouts R and snippet lines T (0 where ``decision`` is False)."""

    code: torch.Tensor       # log pi(a_t | s_t, z_t)
    latent: torch.Tensor     # log q(z_t | s_t)
    think: torch.Tensor      # bool: a thought precedes line t
    decision: torch.Tensor   # bool: line t is a decision line of a rollout
    code_tokens: torch.Tensor  # content tokens of line t (int)


def _layout(codec: LineCodec, rollout: Rollout):
    """ids, and per snippet line t: (first content index, end, thought content start or None)."""
    ids, spans = codec.encode_lines(rollout.lines)
    places, k = [], 0
    for t, line in enumerate(rollout.snippet):
        thought = None
        if t in rollout.thoughts:
            start, _ = spans[k]
            thought = (start + len(codec.indent_ids(rollout.thoughts[t])), spans[k][1])
            k += 1
        start, end = spans[k]
        places.append((start + len(codec.indent_ids(line)), end, thought))
        k += 1
    return ids, places


def score_lines(model, codec: LineCodec, rollouts: list[Rollout], decisions: list[list[bool]]) -> LineScores:
    """Score every rollout (one forward, gradients where the caller enables them); decisions[r][t] as rollouts."""
    layouts = [_layout(codec, rollout) for rollout in rollouts]
    ids, mask = pad([row for row, _ in layouts], codec.pad_id)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()         # (R, L, V)
    norm = logits.logsumexp(-1)                                                # (R, L)
    token = logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1) - norm[:, :-1]   # log p(ids[:, j+1]), (R, L-1)
    comment = codec.comment_mask[: logits.shape[-1]]
    lines = max(len(rollout.snippet) for rollout in rollouts)
    code = torch.zeros(len(rollouts), lines)
    latent = torch.zeros(len(rollouts), lines)
    think = torch.zeros(len(rollouts), lines, dtype=torch.bool)
    decision = torch.zeros(len(rollouts), lines, dtype=torch.bool)
    code_tokens = torch.zeros(len(rollouts), lines, dtype=torch.long)
    code_parts, latent_parts = [], []
    for r, (_, places) in enumerate(layouts):
        for t, (first, end, thought) in enumerate(places):
            if not decisions[r][t]:
                continue
            decision[r, t] = True
            code_tokens[r, t] = end - first
            code_parts.append((r, t, token[r, first - 1:end - 1].sum()))
            if thought is not None:
                think[r, t] = True
                latent_parts.append((r, t, token[r, thought[0] - 1:thought[1] - 1].sum()))
            else:
                p_comment = (logits[r, first - 1, comment].logsumexp(-1) - norm[r, first - 1]).exp()
                latent_parts.append((r, t, torch.log1p(-p_comment.clamp(max=1 - 1e-6))))
    code = code.index_put((torch.tensor([p[0] for p in code_parts]), torch.tensor([p[1] for p in code_parts])),
                          torch.stack([p[2] for p in code_parts])) if code_parts else code
    latent = latent.index_put((torch.tensor([p[0] for p in latent_parts]), torch.tensor([p[1] for p in latent_parts])),
                              torch.stack([p[2] for p in latent_parts])) if latent_parts else latent
    return LineScores(code, latent, think, decision, code_tokens)
