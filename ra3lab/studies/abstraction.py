"""T4 — abstraction vs primitive decisions, and the budget x switching-penalty regret surface.

Part 1: the same task family "mid-trained" at token granularity (Z = primitive actions, tau = 1)
and at abstraction granularity (Z = options): for growing expert datasets, the pruning error of the
observed set plus the error left after a fixed budget of primitive RL samples inside it.
Part 2: at abstraction granularity, keep the top-k decisions by expert frequency (the budget) and
explore with a sticky prior that repeats the previous decision with probability 1 - exp(-c) (the
switching penalty c); the regret Delta + RL error over the (k, c) grid is the surface the LLM sweeps
later mirror (thoughts allowed x thought penalty).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from omegaconf import DictConfig

from ra3lab.envs.family import GRANULARITIES
from ra3lab.errors import check
from ra3lab.mdp.learning import q_learning
from ra3lab.mdp.pruning import prune, pruning_error, sample_expert_data
from ra3lab.studies.common import figure, generator, log_axes, make_family


def validate(config: DictConfig) -> None:
    check(0 < config.sigma <= 1, "sigma", config.sigma, "must lie in (0, 1]")
    check(config.trials >= 1, "trials", config.trials, "need at least 1 trial")
    check(config.rl_budget >= 1, "rl_budget", config.rl_budget, "must be >= 1 primitive step")
    check(len(config.sample_sizes) >= 1 and min(config.sample_sizes) >= 1, "sample_sizes", list(config.sample_sizes),
          "need positive expert dataset sizes")
    check(min(config.surface.budgets) >= 1, "surface.budgets", list(config.surface.budgets), "every budget k must be >= 1")
    check(min(config.surface.penalties) >= 0, "surface.penalties", list(config.surface.penalties), "penalties must be >= 0")
    make_family(config.env, n_tasks=1)


def regret_after_learning(config: DictConfig, family, granularity: str, allowed: torch.Tensor, seed: int,
                          prior: torch.Tensor | None = None, stickiness: float = 0.0) -> tuple[float, float]:
    """(pruning error, RL error) of decision sets allowed (T, Z), averaged over trials and tasks.

    Every task of every trial gets one Q-learner with the same budget of primitive steps, so the
    granularities are compared at equal sample cost.
    """
    smdp = family.smdp(granularity)
    decisions = family.decisions(granularity)
    T, B = allowed.shape[0], len(family.mdps)
    delta = torch.stack([pruning_error(smdp, mask) for mask in allowed])       # (T, B)
    n_decisions = max(1, int(config.rl_budget / float(decisions.mean_length.mean())))
    learned = q_learning(
        family.mdps, decisions, allowed=allowed.repeat_interleave(B, 0), tasks=torch.arange(B).repeat(T),
        n_decisions=n_decisions, eval_every=n_decisions, eps=1e-9, generator=generator(seed),
        terminal=family.meta.get("terminal"), prior=None if prior is None else prior.repeat_interleave(B, 0),
        stickiness=stickiness,
    )
    return float(delta.mean()), float(learned.error[-1].mean())


def expert_counts(config: DictConfig, family, granularity: str, seed: int) -> torch.Tensor:
    """(trials, max n, Z) cumulative decision counts of independent expert datasets."""
    smdp = family.smdp(granularity)
    rng = generator(seed)
    n_max = max(max(config.sample_sizes), int(config.surface.n_samples))
    return torch.stack([
        sample_expert_data(smdp, n_max, float(config.sigma), rng, terminal=family.meta.get("terminal")).counts.cumsum(0)
        for _ in range(int(config.trials))
    ])


def granularity_curves(config: DictConfig, family, run) -> dict:
    counts = {g: expert_counts(config, family, g, int(config.seed) * 10 + i) for i, g in enumerate(GRANULARITIES)}

    def point(_, item) -> dict:
        granularity, n = item
        allowed = prune(counts[granularity][:, n - 1], "observed")
        pruning, rl = regret_after_learning(config, family, granularity, allowed, int(config.seed) + n)
        return {"granularity": granularity, "n": int(n), "pruning_error": pruning, "rl_error": rl,
                "regret": pruning + rl, "kept": float(allowed.double().sum(1).mean())}

    rows = run.map(point, itertools.product(GRANULARITIES, config.sample_sizes), "T4 granularity", "theory/t4/curve")
    return {g: [row for row in rows if row["granularity"] == g] for g in GRANULARITIES}


def regret_surface(config: DictConfig, family, run) -> np.ndarray:
    counts = expert_counts(config, family, "abstract", int(config.seed) * 10 + 7)[:, config.surface.n_samples - 1]
    frequency = (counts + 1e-3) / (counts + 1e-3).sum(1, keepdim=True)
    budgets, penalties = list(config.surface.budgets), list(config.surface.penalties)

    def cell(step, item) -> dict:
        k, c = item
        pruning, rl = regret_after_learning(config, family, "abstract", prune(counts, "top_k", k=int(k)),
                                            int(config.seed) + 31 * (step // len(penalties)) + step % len(penalties),
                                            prior=frequency, stickiness=1 - math.exp(-float(c)))
        return {"budget": int(k), "penalty": float(c), "pruning_error": pruning, "regret": pruning + rl}

    cells = run.map(cell, itertools.product(budgets, penalties), "T4 surface", "theory/t4/surface")
    return np.array([row["regret"] for row in cells]).reshape(len(budgets), len(penalties))


def run(config: DictConfig, run) -> dict:
    family = make_family(config.env)
    curves = granularity_curves(config, family, run)
    surface = regret_surface(config, family, run)
    figures = draw(config, curves, surface, run)
    best = tuple(int(i) for i in np.unravel_index(np.argmin(surface), surface.shape))
    final = {g: curves[g][-1] for g in GRANULARITIES}
    return {
        "abstraction_final_regret": final["abstract"]["regret"],
        "primitive_final_regret": final["primitive"]["regret"],
        "abstraction_wins_at_max_samples": final["abstract"]["regret"] < final["primitive"]["regret"],
        "curves": curves,
        "surface": surface.tolist(),
        "surface_best": {"budget": int(config.surface.budgets[best[0]]), "penalty": float(config.surface.penalties[best[1]]),
                         "regret": float(surface[best])},
        "figures": [str(path) for path in figures],
    }


def draw(config: DictConfig, curves: dict, surface: np.ndarray, run):
    fig, (left, right) = figure(2, width=9.0, height=3.4)
    for color, granularity in zip(("C0", "C1"), GRANULARITIES):
        rows = curves[granularity]
        n = [row["n"] for row in rows]
        left.plot(n, [row["regret"] for row in rows], "o-", color=color, label=f"{granularity}: Δ + RL error")
        left.plot(n, [row["pruning_error"] for row in rows], ":", color=color, label=f"{granularity}: Δ only")
    log_axes(left, config.sample_sizes, logy=False)
    left.set(xlabel="expert samples |D_E|", ylabel="regret at s0",
             title=f"after {config.rl_budget} primitive RL steps")
    left.legend(fontsize=7)
    image = right.imshow(surface, origin="lower", aspect="auto", cmap="viridis")
    right.set_xticks(range(len(config.surface.penalties)), [str(c) for c in config.surface.penalties])
    right.set_yticks(range(len(config.surface.budgets)), [str(k) for k in config.surface.budgets])
    right.set(xlabel="switching penalty c", ylabel="budget k (decisions kept)", title="regret surface")
    right.grid(False)
    for (i, j), value in np.ndenumerate(surface):
        right.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(image, ax=right, label="regret")
    return run.save_figure(fig, "t4_abstraction")
