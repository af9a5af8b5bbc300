"""Token rows of different lengths as one batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad(rows: Sequence[Sequence[int]], pad_id: int = 0, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): LongTensor[B, W], W = the longest row, padded with ``pad_id`` on the right (on the
    left for generation when ``left``); mask is 1 on the rows' tokens, 0 on padding. On the CPU."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[b, span] = torch.tensor(list(row), dtype=torch.long)
        mask[b, span] = 1
    return ids, mask
