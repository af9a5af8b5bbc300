"""The theory's predictions for CodeWorld-Plan, computed before any RL from the mid-training corpus's skill counts
and the world's knobs only, never from a measurement they predict.

Pruning (Theorem 3.5, Lemma 3.2): mid-training on a corpus keeps the skills it shows, ``Z_hat``, by the rule the
theory side uses (:func:`ra3lab.mdp.pruning.prune` on the corpus's skill counts). A policy that picks each of a
plan's H skills uniformly among the kept ones writes a given plan with probability ``|Z_hat|^-H`` when every
step of the plan is kept (else 0): the predicted initial success P0, against ``|Z|^-H`` without pruning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ra3lab.codeworld import CodeWorldPlan, Program
from ra3lab.mdp.pruning import prune


def kept_skills(world: CodeWorldPlan, corpus: Sequence[Program], rule: str = "observed", threshold: float = 0.0,
                k: int | None = None) -> tuple[str, ...]:
    """Z_hat: the skills in use that ``rule`` keeps given how often the corpus's programs use each."""
    counts = torch.as_tensor(world.skill_counts(corpus).sum(0))
    return tuple(name for name, kept in zip(world.skills, prune(counts, rule, threshold, k).tolist()) if kept)


def initial_success(world: CodeWorldPlan, kept: Sequence[str], split: str = "heldout") -> float:
    """P0: over the families of ``split``, the mean chance that H uniform picks among ``kept`` write the plan."""
    families = world.families(split)
    if not kept or not families:
        return 0.0
    covered = [all(name in kept for name in world.plans[family]) for family in families]
    return float(np.mean(covered)) * len(kept) ** -world.skills_per_program


def pruning(world: CodeWorldPlan, corpus: Sequence[Program], rule: str = "observed", threshold: float = 0.0,
            k: int | None = None) -> dict:
    """The pruning predictions: Z_hat, its size against |Z| and |Z_eps|, sigma, and P0 with and without pruning
    (on the held-out families; the base model has seen every skill, so it keeps all of Z)."""
    kept = kept_skills(world, corpus, rule, threshold, k)
    return {"rule": rule, "threshold": threshold, "k": k, "corpus_programs": len(corpus), "Z_hat": list(kept),
            "Z_hat_size": len(kept), "Z": world.n_skills, "Z_eps": world.family_skills, "H": world.skills_per_program,
            "sigma": world.sigma(corpus) if corpus else 0.0,
            "P0_pruned": initial_success(world, kept), "P0_unpruned": initial_success(world, world.skills)}


def steps_to_first_success(p0: float, group_size: int, prompts_per_step: int) -> float:
    """1 / (P0 x G x B): the RLVR steps until the first rollout that passes, in expectation, when each of the
    G x B rollouts of a step passes with probability P0 (inf for P0 = 0). The exploration term of S*."""
    rollouts = p0 * group_size * prompts_per_step
    return 1.0 / rollouts if rollouts > 0 else math.inf


def lock_in(measured_steps: float, p0: float, group_size: int, prompts_per_step: int) -> float:
    """The lock-in constant fitted on one arm (NTP): its measured steps to threshold less its exploration term;
    what RL spends after the first success before the pass rate reaches the threshold."""
    return measured_steps - steps_to_first_success(p0, group_size, prompts_per_step)


def verdict(predicted: float, low: float, high: float, rival: float | None = None) -> str:
    """A prediction against a measurement's interval [low, high]: ``holds`` inside it, ``contradicted`` outside;
    ``undecided`` where the interval is unbounded above (a measurement censored by the budget: above ``low`` a
    longer run decides), where it also holds ``rival`` (the competing prediction: at this power the measurement
    tells them apart from neither), or where a value is missing (nan)."""
    if math.isnan(predicted) or math.isnan(low) or math.isnan(high):
        return "undecided"
    if predicted < low or (predicted > high and math.isfinite(high)):
        return "contradicted"
    if math.isinf(high) or (rival is not None and low <= rival <= high and rival != predicted):
        return "undecided"
    return "holds"
