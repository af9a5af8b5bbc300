"""The theory's predictions for CodeWorld-Plan, computed before any RL from the mid-training corpus's skill counts
and the world's knobs only, never from a measurement they predict.

Pruning (Theorem 3.5, Lemma 3.2): mid-training on a corpus keeps the skills it shows, ``Z_hat``, by the rule the
theory side uses (:func:`ra3lab.mdp.pruning.prune` on the corpus's skill counts). A policy that picks each of a
plan's H skills uniformly among the kept ones writes a given plan with probability ``|Z_hat|^-H`` when every
step of the plan is kept (else 0): the predicted initial success P0, against ``|Z|^-H`` without pruning.
"""

from __future__ import annotations

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
