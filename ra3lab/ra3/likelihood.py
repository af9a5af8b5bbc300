"""Per-line log-likelihoods of rollouts: the code each line holds (pi, the reward), the thought before it (the
joint's term) and the latent choice (q, the policy gradient).

For rollout r and decision line t of its snippet:

- ``code[r, t]`` = log pi(a_t | s_t, z_t): the summed log-probabilities of line t's content tokens
  (its indent is context, fed whether or not a thought precedes it);
- ``thought[r, t]`` = log pi(z_t | s_t): the summed log-probabilities of the thought's content tokens, its
  (possibly forced) newline included; 0 without a thought, where the choice not to think is already inside
  ``code`` (its first token is not a comment token). So log pi(a, z) = sum_t code + thought;
- ``latent[r, t]`` = log q(z_t | s_t) as the sampler drew it with this model as q at ``temperature``: for a
  thought, its sampled tokens' tempered log-probabilities (a forced newline has probability 1 and is left
  out); for no thought, log(1 - tempered mass on comment tokens) at line t's first content token.

All read one forward pass over :func:`~ra3lab.ra3.rollout.rollout_ids` per rollout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ra3lab.lm import LineCodec
from ra3lab.lm.padding import pad
from ra3lab.ra3.rollout import Rollout, rollout_ids


@dataclass
class LineScores:
    """Tensors[R, T] over rollouts R and snippet lines T (0 where ``decision`` is False)."""

    code: torch.Tensor       # log pi(a_t | s_t, z_t)
    thought: torch.Tensor    # log pi(z_t | s_t) of a thought's tokens (0 without one)
    latent: torch.Tensor     # log q(z_t | s_t) of the sampled choice
    think: torch.Tensor      # bool: a thought precedes line t
    decision: torch.Tensor   # bool: line t is a decision line of a rollout
    code_tokens: torch.Tensor  # content tokens of line t (int)


def score_lines(model, codec: LineCodec, rollouts: list[Rollout], decisions: list[list[bool]],
                temperature: float = 1.0, view: str = "pi") -> LineScores:
    """Score every rollout (one forward, gradients where the caller enables them); decisions[r][t] as rollouts;
    ``temperature``: q's sampling temperature, for ``latent``. ``view="q"`` scores the sequences q saw (with
    its lookahead lines): then only ``latent`` is meaningful."""
    layouts = [rollout_ids(codec, rollout, view) for rollout in rollouts]
    ids, mask = pad([row for row, _ in layouts], codec.pad_id)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()         # (R, L, V)
    picked = logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)                  # (R, L-1)
    token = picked - logits[:, :-1].logsumexp(-1)                                       # log p(ids[:, j+1])
    tempered_norm = (logits / temperature).logsumexp(-1)                                # (R, L)
    tempered_token = picked / temperature - tempered_norm[:, :-1]                       # log q(ids[:, j+1])
    comment = codec.comment_mask[: logits.shape[-1]]
    lines = max(len(rollout.snippet) for rollout in rollouts)
    shape = (len(rollouts), lines)
    think = torch.zeros(shape, dtype=torch.bool)
    decision = torch.zeros(shape, dtype=torch.bool)
    code_tokens = torch.zeros(shape, dtype=torch.long)
    parts: dict[str, list] = {"code": [], "thought": [], "latent": []}
    for r, ((_, places), rollout) in enumerate(zip(layouts, rollouts)):
        for t, (first, end, thought) in enumerate(places):
            if not decisions[r][t]:
                continue
            decision[r, t] = True
            code_tokens[r, t] = end - first
            parts["code"].append((r, t, token[r, first - 1:end - 1].sum()))
            if thought is not None:
                start, stop = thought
                sampled = stop - start - (t in rollout.thought_ids and len(rollout.thought_ids[t]) < stop - start)
                think[r, t] = True
                parts["thought"].append((r, t, token[r, start - 1:stop - 1].sum()))
                parts["latent"].append((r, t, tempered_token[r, start - 1:start - 1 + sampled].sum()))
            else:
                p_comment = ((logits[r, first - 1, comment] / temperature).logsumexp(-1)
                             - tempered_norm[r, first - 1]).exp()
                parts["latent"].append((r, t, torch.log1p(-p_comment.clamp(max=1 - 1e-6))))

    def grid(name: str) -> torch.Tensor:
        found = parts[name]
        if not found:
            return torch.zeros(shape)
        index = (torch.tensor([p[0] for p in found]), torch.tensor([p[1] for p in found]))
        return torch.zeros(shape).index_put(index, torch.stack([p[2] for p in found]))

    return LineScores(grid("code"), grid("thought"), grid("latent"), think, decision, code_tokens)
