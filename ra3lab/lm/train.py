"""Next-token prediction on token sequences: the M-step's and the NTP baseline's optimiser loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from omegaconf import DictConfig
from transformers import get_cosine_schedule_with_warmup

from ra3lab.errors import check
from ra3lab.lm.padding import pad
from ra3lab.runtime import accelerator, shard, world

LOG_EVERY = 10      # steps between calls of ``log``
CLIP = 1.0          # gradient norm clip


def _batch(sequences, loss_mask, rows, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention_mask, labels): LongTensor[B, T] right padded; labels -100 off the loss."""
    ids, mask = pad([sequences[i] for i in rows])
    keep = mask if loss_mask is None else pad([loss_mask[i] for i in rows])[0]
    labels = torch.where(keep.bool(), ids, -100)
    return ids.to(device), mask.to(device), labels.to(device)


def _loss_tokens(sequences, loss_mask, rows) -> int:
    """Tokens the loss counts over ``rows``: every token after the first, or those whose loss_mask entry is 1."""
    return sum(len(sequences[i]) - 1 if loss_mask is None else sum(loss_mask[i][1:]) for i in rows)


def train_ntp(model, sequences: Sequence[Sequence[int]], steps: int, batch_size: int = 16, lr: float = 3e-3,
              warmup: int | None = None, seed: int = 0, log: Callable[[int, float], None] | None = None,
              loss_mask: Sequence[Sequence[int]] | None = None, runtime: DictConfig | None = None) -> list[float]:
    """Train ``model`` in place for ``steps`` AdamW steps; returns each step's mean token loss (nats).

    Batches of ``batch_size`` sequences are drawn without replacement, epoch by epoch, in an order
    fixed by ``seed``; right padding is ignored, as are tokens whose ``loss_mask`` entry is 0 (one
    0/1 list per sequence, as long as it; a token is predicted from those before it, the first never).
    The learning rate warms up linearly over ``warmup`` steps (default ``steps // 10``), then decays
    to 0 on a cosine; gradients are clipped to norm 1. ``log(step, loss)`` is called every 10 steps
    and at the last. The model is left in eval mode.

    Under a launch of several processes (:mod:`ra3lab.runtime`) the model is wrapped for DDP by the runtime's
    accelerator and each process takes its share of every batch (:func:`~ra3lab.runtime.shard`); each divides its
    summed token loss by the batch's token count over the processes, so that the averaged gradient is one
    process's on the whole batch: the same steps up to the order of float sums (and the same losses, averaged
    over the processes). Only rank 0 calls ``log``.
    """
    rank, size, _ = world()
    check(isinstance(steps, int) and steps >= 1, "steps", steps, "must be an integer >= 1")
    warmup = steps // 10 if warmup is None else warmup
    check(isinstance(batch_size, int) and batch_size >= size, "batch_size", batch_size,
          f"must be an integer >= {size}, one sequence for each of the {size} processes at least")
    check(lr > 0, "lr", lr, "must be > 0")
    check(isinstance(warmup, int) and 0 <= warmup <= steps, "warmup", warmup, f"must be an integer in [0, {steps}]")
    check(len(sequences) >= 1 and all(len(s) >= 2 for s in sequences), "sequences", len(sequences),
          "give at least one sequence, each of at least 2 tokens")
    check(loss_mask is None or (len(loss_mask) == len(sequences)
                                and all(len(m) == len(s) and any(m[1:]) for m, s in zip(loss_mask, sequences))),
          "loss_mask", None if loss_mask is None else len(loss_mask),
          "give one 0/1 list per sequence, as long as it, with a 1 after the first token")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    engine = accelerator(runtime)
    trained, optimizer = engine.prepare(model, optimizer)
    order: list[int] = []
    losses = []
    trained.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)                 # dropout, where a model has any
        for step in range(1, steps + 1):
            while len(order) < batch_size:
                order += torch.randperm(len(sequences), generator=generator).tolist()
            rows, order = order[:batch_size], order[batch_size:]
            ids, mask, labels = _batch(sequences, loss_mask, shard(rows), engine.device)
            share = None if size == 1 else _loss_tokens(sequences, loss_mask, rows) / size
            with engine.autocast():
                loss = trained(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=share).loss
            optimizer.zero_grad(set_to_none=True)
            engine.backward(loss)
            engine.clip_grad_norm_(trained.parameters(), CLIP)
            optimizer.step()
            schedule.step()
            losses.append(engine.reduce(loss.detach(), "mean").item())      # the whole batch's mean token loss
            if log is not None and rank == 0 and (step % LOG_EVERY == 0 or step == steps):
                log(step, losses[-1])
    model.eval()
    return losses
