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

All read per-position scores of :func:`~ra3lab.ra3.rollout.rollout_ids`: one padded forward over every rollout,
or, for groups of rollouts of one snippet, one forward over each group's shared prefix whose KV cache the
group's continuations attend to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from ra3lab.errors import check
from ra3lab.lm import LineCodec
from ra3lab.lm.padding import pad
from ra3lab.lm.scoring import cache_keyword
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
                temperature: float = 1.0, view: str = "pi", group_size: int = 1) -> LineScores:
    """Score every rollout (gradients where the caller enables them); decisions[r][t] as rollouts;
    ``temperature``: q's sampling temperature, for ``latent``. ``view="q"`` scores the sequences q saw (with
    its lookahead lines): then only ``latent`` is meaningful. ``group_size`` G > 1: rollouts gG..gG+G-1 are of
    one snippet, and the ids they share are computed once (the same scores up to float error)."""
    check(isinstance(group_size, int) and group_size >= 1 and len(rollouts) % group_size == 0, "group_size",
          group_size, f"must be an integer >= 1 that divides the {len(rollouts)} rollouts")
    layouts = [rollout_ids(codec, rollout, view) for rollout in rollouts]
    rows = [ids for ids, _ in layouts]
    scores = (_grouped_scores(model, rows, codec, temperature, group_size) if group_size > 1
              else _padded_scores(model, rows, codec, temperature))                  # (R, L-1, 3)
    shape = (len(rollouts), max(len(rollout.snippet) for rollout in rollouts))
    think = torch.zeros(shape, dtype=torch.bool)
    decision = torch.zeros(shape, dtype=torch.bool)
    code_tokens = torch.zeros(shape, dtype=torch.long)
    # per (r, t), positions j (each predicting id j + 1): code [a, b), thought [a, b), the sampled thought's end
    bounds = [[[0] * 5 for _ in range(shape[1])] for _ in rollouts]
    for r, ((_, places), rollout) in enumerate(zip(layouts, rollouts)):
        for t, (first, end, thought) in enumerate(places):
            if not decisions[r][t]:
                continue
            decision[r, t] = True
            code_tokens[r, t] = end - first
            bounds[r][t][:2] = first - 1, end - 1
            if thought is not None:
                start, stop = thought
                sampled = stop - start - (t in rollout.thought_ids and len(rollout.thought_ids[t]) < stop - start)
                think[r, t] = True
                bounds[r][t][2:] = start - 1, stop - 1, start - 1 + sampled
    spans = torch.tensor(bounds).permute(2, 0, 1)                                     # (5, R, T)
    # sums[r, k, c] = sum of channel c over positions j < k, in float64 so that differences of sums stay exact
    sums = torch.nn.functional.pad(scores[..., :2].double().cumsum(1), (0, 0, 1, 0))
    row = torch.arange(shape[0])[:, None]

    def span(channel: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (sums[row, b, channel] - sums[row, a, channel]).float()

    p_comment = scores[row, spans[0], 2].exp()               # q's mass on comment tokens before line t's content
    quiet = torch.where(decision, torch.log1p(-p_comment.clamp(max=1 - 1e-6)), 0.0)
    return LineScores(span(0, spans[0], spans[1]), span(0, spans[2], spans[3]),
                      torch.where(think, span(1, spans[2], spans[4]), quiet), think, decision, code_tokens)


def shared_prefix_lengths(rows: list[list[int]], group_size: int) -> list[int]:
    """Per group of ``group_size`` consecutive id rows: the length of their longest common prefix, at least 1 (the
    bos) and at most the shortest row's length - 1 (every row keeps a continuation)."""
    groups = [rows[i:i + group_size] for i in range(0, len(rows), group_size)]
    return [max(1, min(len(os.path.commonprefix(group)), min(map(len, group)) - 1)) for group in groups]


def _padded_scores(model, rows: list[list[int]], codec: LineCodec, temperature: float) -> torch.Tensor:
    """:func:`_position_scores` of every row (R, L-1, 3) by one forward over the rows right padded to L."""
    ids, mask = pad(rows, codec.pad_id)
    return _position_scores(model(input_ids=ids, attention_mask=mask).logits[:, :-1], ids[:, 1:], codec, temperature)


def _position_scores(logits: torch.Tensor, targets: torch.Tensor, codec: LineCodec, temperature: float
                     ) -> torch.Tensor:
    """Tensor[B, W, 3] from logits (B, W, V) and the ids they predict (B, W): at each position log p(target),
    log q(target) at ``temperature``, and the log of q's tempered mass on comment tokens (nats, float32)."""
    logits = logits.float()
    picked = logits.gather(-1, targets[..., None]).squeeze(-1)
    tempered = logits if temperature == 1 else logits / temperature
    norm = tempered.logsumexp(-1)
    plain = norm if temperature == 1 else logits.logsumexp(-1)
    comment = tempered[..., codec.comment_mask[: logits.shape[-1]]].logsumexp(-1)
    return torch.stack([picked - plain, picked / temperature - norm, comment - norm], -1)


def _grouped_scores(model, rows: list[list[int]], codec: LineCodec, temperature: float, G: int) -> torch.Tensor:
    """:func:`_position_scores` of every row (R, L-1, 3), the G rows of each group (one snippet's rollouts) scored
    together: one forward over their P shared ids, its KV cache repeated to the G rows, one forward over their
    continuations (right padded to C) at positions P..P+C-1. Groups run one after another: snippets differ in
    length, and padding them to one batch costs more than it saves (measured on CPU)."""
    width = max(map(len, rows)) - 1
    name = cache_keyword(model)
    parts = []
    for g, P in enumerate(shared_prefix_lengths(rows, G)):
        group = rows[g * G:(g + 1) * G]
        prefix = torch.tensor([group[0][:P]])
        ids, mask = pad([row[P:] for row in group], codec.pad_id)                                   # (G, C)
        cache = DynamicCache(config=model.config)
        head = model(input_ids=prefix, use_cache=True, **{name: cache}).logits                      # (1, P, V)
        cache.batch_repeat_interleave(G)     # out of place: gradients reach the prefix through the repeated cache
        tail = model(input_ids=ids, attention_mask=torch.cat([mask.new_ones(G, P), mask], 1),
                     position_ids=torch.arange(P, P + ids.shape[1]).expand_as(ids), **{name: cache}).logits
        inner = _position_scores(head[:, :-1], prefix[:, 1:], codec, temperature).expand(G, -1, -1)  # (G, P-1, 3)
        outer = _position_scores(torch.cat([head[:, -1:].expand(G, -1, -1), tail[:, :-1]], 1), ids, codec,
                                 temperature)                                                        # (G, C, 3)
        parts.append(torch.nn.functional.pad(torch.cat([inner, outer], 1), (0, 0, 0, width - P + 1 - ids.shape[1])))
    return torch.cat(parts)
