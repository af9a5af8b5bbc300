"""Log-likelihoods of token sequences under a causal LM, and the keyword a model takes its KV cache by.
(The E-step's rollouts of one snippet share their prefix's keys and values: :mod:`ra3lab.ra3.likelihood`.)"""

from __future__ import annotations

import inspect

import torch


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
