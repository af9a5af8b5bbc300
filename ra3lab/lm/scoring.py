"""Log-likelihoods of token sequences under a causal LM, and of many continuations of one prefix
(the E-step's G rollouts of a snippet) with the prefix's keys and values computed once."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers import DynamicCache

from ra3lab.errors import check
from ra3lab.lm.padding import pad


def _gather(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., targets] in float32 without a second (.., V) tensor: logits (.., V)."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def token_logprobs(model, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Tensor[B, T-1]: ``log p(ids[:, t+1] | ids[:, :t+1])``, 0 where ``ids[:, t+1]`` is padding.

    ids, attention_mask: LongTensor[B, T], right padded (mask 1 on tokens, 0 on padding).
    Gradients flow when the caller enables them.
    """
    logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, :-1]
    return _gather(logits, ids[:, 1:]) * attention_mask[:, 1:]


def cache_keyword(model) -> str:
    """The keyword a model's forward takes its KV cache by: ``cache`` in newer transformers, else
    ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _check(prefix: Sequence[int], continuations: Sequence[Sequence[int]]) -> None:
    check(len(prefix) >= 1, "prefix", prefix, "needs at least one token (a bos)")
    check(len(continuations) >= 1, "continuations", continuations, "give at least one continuation")


@torch.no_grad()
def score_continuations(model, prefix: Sequence[int], continuations: Sequence[Sequence[int]]) -> torch.Tensor:
    """Tensor[G] (float64): ``sum_t log p(c_t | prefix, c_<t)`` for each of the G continuations c, 0 for an
    empty one; the float32 log-probabilities are summed in float64, so sums of long continuations agree.

    One forward over the prefix (P tokens) keeps its KV cache, repeated to the G rows; one batched
    forward over the continuations, right padded to C tokens, at positions P..P+C-1, attends to it.
    """
    _check(prefix, continuations)
    device, P = model.device, len(prefix)
    if max(len(c) for c in continuations) == 0:
        return torch.zeros(len(continuations), dtype=torch.float64, device=device)
    name, cache = cache_keyword(model), DynamicCache(config=model.config)      # the prefix forward fills the cache
    out = model(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True, logits_to_keep=1,
                **{name: cache})
    ids, mask = (tensor.to(device) for tensor in pad(continuations))
    G, C = ids.shape
    cache.batch_repeat_interleave(G)
    logits = model(input_ids=ids, attention_mask=torch.cat([mask.new_ones(G, P), mask], 1),
                   position_ids=torch.arange(P, P + C, device=device).expand(G, C), **{name: cache}).logits
    scores = torch.cat([_gather(out.logits.expand(G, 1, -1), ids[:, :1]),      # first tokens, from the prefix
                        _gather(logits[:, :-1], ids[:, 1:])], 1)                # (G, C)
    return (scores.double() * mask).sum(1)


@torch.no_grad()
def score_continuations_naive(model, prefix: Sequence[int], continuations: Sequence[Sequence[int]]) -> torch.Tensor:
    """Same as :func:`score_continuations` by one forward of ``prefix + c`` per continuation c."""
    _check(prefix, continuations)
    scores = []
    for c in continuations:
        ids = torch.tensor([list(prefix) + list(c)], device=model.device)
        logits = model(input_ids=ids, logits_to_keep=len(c) + 1).logits[0, :-1]
        scores.append(_gather(logits, ids[0, len(prefix):]).double().sum())
    return torch.stack(scores)
