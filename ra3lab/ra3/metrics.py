"""Where thoughts go and what they say, measured: thought rate and length, boundary precision / recall / F1
against truth, and whether a thought names what the lines after it hold (a posterior-style q's hindsight)."""

from __future__ import annotations

import re

from ra3lab.lm import LineCodec
from ra3lab.ra3.rollout import Rollout, closed


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
    lengths = [len(closed(codec, rollout.thought_ids[t]) if t in rollout.thought_ids
                   else codec.content_ids(thought)) - 1
               for rollout in rollouts for t, thought in rollout.thoughts.items()]       # tokens before the newline
    stats = {"rate": len(lengths) / max(n_lines, 1), "length": sum(lengths) / len(lengths) if lengths else 0.0}
    if truth is not None:
        stats.update(boundary_scores([set(rollout.thoughts) for rollout in rollouts], truth))
    return stats


COMMON_NAMES = frozenset({"for", "in", "if", "else", "not", "and", "or", "return", "range", "len", "def"})


def _names(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]\w*", text)) - COMMON_NAMES


def names_next_lines(rollouts: list[Rollout], window: int = 2) -> float:
    """Share of thoughts holding a name (identifier or word) that the next ``window`` code lines introduce, i.e.
    that no earlier line of the snippet holds; 0.0 without thoughts."""
    hits = count = 0
    for rollout in rollouts:
        for t, thought in rollout.thoughts.items():
            new = _names(" ".join(rollout.snippet[t:t + window])) - _names(" ".join(rollout.snippet[:t]))
            hits += bool(_names(thought.lstrip().removeprefix("#")) & new)
            count += 1
    return hits / count if count else 0.0


def names_intent(rollouts: list[Rollout], intents: list[dict[int, str]]) -> float:
    """Share of thoughts that name the intent of the line they precede: the thought's text (at least 6
    characters) is a prefix of ``intents[r][t]`` or starts with it; 0.0 without thoughts."""
    hits = count = 0
    for rollout, intent in zip(rollouts, intents):
        for t, thought in rollout.thoughts.items():
            text, phrase = thought.strip().lstrip("#").strip(), intent.get(t, "")
            hits += len(text) >= 6 and bool(phrase) and (phrase.startswith(text) or text.startswith(phrase))
            count += 1
    return hits / count if count else 0.0
