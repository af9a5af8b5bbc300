"""Where thoughts go, measured: thought rate and length, and boundary precision / recall / F1 against truth."""

from __future__ import annotations

from ra3lab.lm import LineCodec
from ra3lab.ra3.rollout import Rollout


def boundary_scores(predicted: list[set[int]], truth: list[set[int]]) -> dict:
    """Micro-averaged precision, recall and F1 of predicted boundary lines against the true ones (per snippet)."""
    hits = sum(len(p & t) for p, t in zip(predicted, truth))
    n_predicted, n_true = sum(map(len, predicted)), sum(map(len, truth))
    precision = hits / n_predicted if n_predicted else 0.0
    recall = hits / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"boundary_precision": precision, "boundary_recall": recall, "boundary_f1": f1}


def thought_stats(rollouts: list[Rollout], decisions: list[list[bool]], codec: LineCodec,
                  truth: list[set[int]] | None = None) -> dict:
    """``rate`` (thoughts per decision line), ``length`` (mean content tokens per thought) and, given
    the true boundary lines of each rollout's snippet, the boundary scores."""
    n_lines = sum(sum(d) for d in decisions)
    thoughts = [thought for rollout in rollouts for thought in rollout.thoughts.values()]
    stats = {"rate": len(thoughts) / max(n_lines, 1),
             "length": sum(len(codec.content_ids(t)) - 1 for t in thoughts) / len(thoughts) if thoughts else 0.0}
    if truth is not None:
        stats.update(boundary_scores([set(rollout.thoughts) for rollout in rollouts], truth))
    return stats
