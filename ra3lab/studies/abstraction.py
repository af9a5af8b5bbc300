"""T4 — the LLM's shape: mid-training + RL at token vs abstraction granularity, at equal primitive-step budgets.

Part 1: a task family (by default ``vocab``: |A| primitive actions of which one moves on at each state,
a compact set of skill options and distractors; |A| swept) mid-trained at each granularity from ``n`` expert samples
(the observed-set rule; a dataset that reveals nothing falls back to the full set, flagged), then one
Q-learner per task inside Z_hat, both granularities read at the same primitive-step budgets. Regret
is measured against the best primitive policy, so for a task M and learner pi (Lemma 3.2, exact):

    V*_M(s0) - V^pi(s0) = gap_M + Delta(M, Z_hat) + (V*_{M|Z_hat}(s0) - V^pi(s0))
    gap_M = V*_M(s0) - V*_{M|Z}(s0): what the full decision set of the granularity loses (0 for primitives).

Part 2: at abstraction granularity, keep the top-k decisions by expert frequency (the budget k) and
explore with a sticky prior that repeats the previous decision with probability 1 - exp(-c) (the
switching penalty c): the regret surface over (k, c), the LLM sweeps' thoughts allowed x thought penalty.
Every number is a mean over ``trials`` seeds (an independent expert dataset and learners each) with a
Student-t interval.
"""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import torch
from hydra.utils import get_method
from matplotlib.patches import Rectangle
from omegaconf import DictConfig

from ra3lab.envs.family import GRANULARITIES, OptionFamily
from ra3lab.errors import check
from ra3lab.mdp.learning import q_learning
from ra3lab.mdp.planning import optimal_values, start_values
from ra3lab.mdp.pruning import full_where_empty, prune, pruning_error, sample_expert_data
from ra3lab.plots.style import FULL, figure, log_axes
from ra3lab.stats import mean_ci
from ra3lab.studies.common import generator, make_env

VERDICTS = ("abstraction", "primitive", "not separated")
DECISION_SLACK = 0.05   # extra decisions so that options cut short at a terminal still spend the budget
EVALUATIONS_PER_BUDGET = 4   # exact evaluations within the smallest budget
TIE_TOLERANCE = 1e-12   # a difference whose interval reaches this far down is no difference (round-off)


def validate(config: DictConfig) -> None:
    check(config.seed >= 0, "seed", config.seed, "must be >= 0")
    check(0 < config.sigma <= 1, "sigma", config.sigma, "must lie in (0, 1]")
    check(config.trials >= 2, "trials", config.trials, "need at least 2 trials (seeds) for a confidence interval")
    check(0 < config.confidence < 1, "confidence", config.confidence, "must lie in (0, 1)")
    check(len(config.sample_sizes) >= 1 and min(config.sample_sizes) >= 0, "sample_sizes", list(config.sample_sizes),
          "need expert dataset sizes >= 0 (0: no expert data, the full decision set)")
    budgets = list(config.rl_budgets)
    check(len(budgets) >= 1 and min(budgets) >= 1 and all(a < b for a, b in itertools.pairwise(budgets)), "rl_budgets",
          budgets, "need increasing primitive-step budgets >= 1")
    check(config.episode_steps >= 1, "episode_steps", config.episode_steps, "must be >= 1 primitive step")
    check(config.surface.n_samples >= 1, "surface.n_samples", config.surface.n_samples, "need at least 1 expert sample")
    check(config.surface.rl_budget >= 1, "surface.rl_budget", config.surface.rl_budget, "must be >= 1 primitive step")
    check(len(config.surface.budgets) >= 1 and min(config.surface.budgets) >= 1, "surface.budgets",
          list(config.surface.budgets), "every budget k must be >= 1")
    check(len(config.surface.penalties) >= 1 and min(config.surface.penalties) >= 0, "surface.penalties",
          list(config.surface.penalties), "penalties must be >= 0")
    if config.vocab_sizes is not None:
        takes = inspect.signature(get_method(config.env._target_)).parameters
        check("n_actions" in takes, "vocab_sizes", list(config.vocab_sizes),
              f"{config.env._target_} takes no n_actions: set vocab_sizes=null to run the env as configured")
        check(len(config.vocab_sizes) >= 1, "vocab_sizes", list(config.vocab_sizes), "name at least one |A| (or null)")
    for overrides in _family_overrides(config):
        make_env(config.env, n_tasks=1, **overrides)


def _family_overrides(config: DictConfig) -> list[dict]:
    return [{}] if config.vocab_sizes is None else [{"n_actions": int(a)} for a in config.vocab_sizes]


def stream(*keys: int) -> torch.Generator:
    """A generator seeded from the integers ``keys``: one independent stream per (seed, part, item)."""
    return generator(int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0]))


def expert_prefixes(family: OptionFamily, granularity: str, sizes: list[int], trials: int, sigma: float,
                    rng: torch.Generator) -> torch.Tensor:
    """(trials, len(sizes), Z) decision counts of the first n samples of ``trials`` independent datasets."""
    smdp = family.smdp(granularity)
    n_max = max(1, max(sizes))
    counts = sample_expert_data(smdp, trials * n_max, sigma, rng, terminal=family.meta.get("terminal")).counts
    prefixes = torch.cat([torch.zeros(trials, 1, smdp.n_options, dtype=torch.long),
                          counts.view(trials, n_max, -1).cumsum(1)], 1)
    return prefixes[:, torch.tensor(sizes)]


def abstraction_gap(family: OptionFamily, granularity: str) -> torch.Tensor:
    """(B,) V*_M(s0) over primitive actions minus V*_{M|Z}(s0) over the granularity's full decision set."""
    values = {g: start_values(family.smdp(g), optimal_values(family.smdp(g))) for g in ("primitive", granularity)}
    return values["primitive"] - values[granularity]


def pruning_errors(smdp, masks: torch.Tensor) -> torch.Tensor:
    """(R, B) Delta(M, Z_hat) of masks (R, Z), computed once per distinct mask."""
    distinct, inverse = torch.unique(masks, dim=0, return_inverse=True)
    return torch.stack([pruning_error(smdp, mask) for mask in distinct])[inverse]


def errors_at_budgets(steps: torch.Tensor, errors: torch.Tensor,
                      budgets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, N) RL error of each learner at its last evaluation within each primitive-step budget, and (K, N)
    the share of the budget it had spent by then; steps, errors: (T, N) from ``q_learning``."""
    limits = torch.tensor(budgets).view(-1, 1, 1)
    last = (steps.unsqueeze(0) <= limits).sum(1) - 1                          # (K, N); evaluation 0 has spent 0
    spent = steps.gather(0, last).double() / limits.squeeze(-1)
    return errors.gather(0, last), spent


def regret_parts(config: DictConfig, family: OptionFamily, granularity: str, allowed: torch.Tensor, budgets: list[int],
                 rng: torch.Generator, prior: torch.Tensor | None = None, stickiness: float = 0.0) -> dict:
    """One Q-learner per (row of ``allowed`` (R, Z), task), each given ``max(budgets)`` primitive steps.

    Returns per row, averaged over the B tasks: "gap" (R,), "pruning" (R,), "rl" (K, R) at each budget,
    and "spent" (K,), the mean share of each budget the learners had used at the evaluation read.
    """
    smdp, decisions = family.smdp(granularity), family.decisions(granularity)
    R, B = allowed.shape[0], len(family.mdps)
    mean_tau = float(decisions.mean_length.mean())
    learned = q_learning(
        family.mdps, decisions, allowed=allowed.repeat_interleave(B, 0), tasks=torch.arange(B).repeat(R),
        n_decisions=math.ceil((1 + DECISION_SLACK) * max(budgets) / mean_tau),
        eval_every=max(1, int(min(budgets) / mean_tau / EVALUATIONS_PER_BUDGET)), eps=1e-9, generator=rng,
        terminal=family.meta.get("terminal"), prior=None if prior is None else prior.repeat_interleave(B, 0),
        stickiness=stickiness, horizon=max(1, round(config.episode_steps / mean_tau)),
    )
    rl, spent = errors_at_budgets(learned.primitive_steps, learned.error, budgets)
    return {"gap": abstraction_gap(family, granularity).mean().expand(R),
            "pruning": pruning_errors(smdp, allowed).mean(1),
            "rl": rl.view(len(budgets), R, B).mean(-1), "spent": spent.mean(1)}


def compare(primitive: np.ndarray, abstract: np.ndarray, confidence: float) -> dict:
    """Primitive minus abstraction regret (trials,) each, with a t-interval over the per-trial differences
    (the arms' trials are independent, so the differences are too). verdict: "abstraction" if the interval
    lies above 0, "primitive" if below, else "not separated"."""
    difference, low, high = (float(v) for v in mean_ci(np.asarray(primitive) - np.asarray(abstract), confidence))
    verdict = VERDICTS[0] if low > 0 else VERDICTS[1] if high < 0 else VERDICTS[2]
    return {"primitive": float(np.mean(primitive)), "abstract": float(np.mean(abstract)), "difference": difference,
            "low": low, "high": high, "verdict": verdict}


def best_cell(regret: np.ndarray, confidence: float) -> dict:
    """The cell of least mean regret in ``regret`` (trials, K, C) and the cells tied with it: those whose
    paired per-trial excess over it (cells share each trial's expert data) has an interval reaching 0.
    separated: no other cell tied (None for a single cell)."""
    trials = regret.shape[0]
    mean = regret.mean(0)
    flat = int(np.argmin(mean))
    best = np.unravel_index(flat, mean.shape)
    excess = (regret - regret.reshape(trials, -1)[:, flat][:, None, None]).reshape(trials, -1)
    low = np.array([float(mean_ci(excess[:, j], confidence)[1]) for j in range(excess.shape[1])]).reshape(mean.shape)
    tied = ~(low > TIE_TOLERANCE)          # the best cell itself has excess 0: tied with itself
    return {"index": tuple(int(i) for i in best), "tied": tied,
            "separated": None if mean.size == 1 else bool(tied.sum() == 1)}


def granularity_points(config: DictConfig, families: dict[int, OptionFamily], run) -> list[dict]:
    """One point per (granularity, |A|): per-trial pruning errors and RL errors at every (n, budget)."""
    sizes, budgets = [int(n) for n in config.sample_sizes], [int(b) for b in config.rl_budgets]
    trials = int(config.trials)

    def point(_, item) -> dict:
        granularity, n_actions = item
        family = families[n_actions]
        keys = (int(config.seed), 1, n_actions, GRANULARITIES.index(granularity))
        counts = expert_prefixes(family, granularity, sizes, trials, float(config.sigma), stream(*keys, 0))
        masks, empty = full_where_empty(prune(counts, "observed"))                 # (trials, sizes, Z)
        parts = regret_parts(config, family, granularity, masks.transpose(0, 1).flatten(0, 1), budgets,
                             stream(*keys, 1))
        shape = (len(sizes), trials)
        return {"granularity": granularity, "n_actions": n_actions, "gap": float(parts["gap"][0]),
                "kept": masks.sum(-1).double().mean(0).tolist(), "fallbacks": empty.sum(0).tolist(),
                "pruning_error": parts["pruning"].view(shape).tolist(),
                "rl_error": parts["rl"].view(len(budgets), *shape).tolist(), "budget_spent": parts["spent"].tolist()}

    items = list(itertools.product(GRANULARITIES, families))
    return run.map(point, items, "T4 granularity", "theory/t4/curve")


def regret_trials(point: dict, size: int, budget: int) -> np.ndarray:
    """(trials,) regret gap + Delta + RL error of a granularity point at one (size index, budget index)."""
    return point["gap"] + np.asarray(point["pruning_error"][size]) + np.asarray(point["rl_error"][budget][size])


def curve_rows(config: DictConfig, points: list[dict]) -> list[dict]:
    """One row per (granularity, |A|, n, budget): mean regret with its interval and the parts of the mean."""
    rows = []
    for point in points:
        for (i, n), (k, budget) in itertools.product(enumerate(config.sample_sizes), enumerate(config.rl_budgets)):
            mean, low, high = (float(v) for v in mean_ci(regret_trials(point, i, k), config.confidence))
            rows.append({"granularity": point["granularity"], "n_actions": point["n_actions"], "n": int(n),
                         "budget": int(budget), "regret": mean, "low": low, "high": high, "gap": point["gap"],
                         "pruning_error": float(np.mean(point["pruning_error"][i])),
                         "rl_error": float(np.mean(point["rl_error"][k][i])), "kept": point["kept"][i],
                         "fallbacks": int(point["fallbacks"][i]), "budget_spent": point["budget_spent"][k]})
    return rows


def comparisons(config: DictConfig, points: list[dict]) -> list[dict]:
    """compare() at every (|A|, n, budget)."""
    by_key = {(p["granularity"], p["n_actions"]): p for p in points}
    rows = []
    for n_actions in sorted({p["n_actions"] for p in points}):
        for (i, n), (k, budget) in itertools.product(enumerate(config.sample_sizes), enumerate(config.rl_budgets)):
            primitive, abstract = (regret_trials(by_key[g, n_actions], i, k) for g in ("primitive", "abstract"))
            rows.append({"n_actions": n_actions, "n": int(n), "budget": int(budget),
                         **compare(primitive, abstract, config.confidence)})
    return rows


def regret_surface(config: DictConfig, family: OptionFamily, run) -> list[dict]:
    """One cell per (k, c), in row-major order: per-trial regret of top-k Z_hat explored with stickiness c.
    Every cell prunes the same ``trials`` expert datasets; its learners are its own."""
    trials = int(config.trials)
    counts = expert_prefixes(family, "abstract", [int(config.surface.n_samples)], trials, float(config.sigma),
                             stream(int(config.seed), 2))[:, 0]                                # (trials, Z)
    frequency = (counts + 1e-3) / (counts + 1e-3).sum(1, keepdim=True)

    def cell(step, item) -> dict:
        k, c = item
        masks, empty = full_where_empty(prune(counts, "top_k", k=int(k)))
        parts = regret_parts(config, family, "abstract", masks, [int(config.surface.rl_budget)],
                             stream(int(config.seed), 3, step), prior=frequency, stickiness=1 - math.exp(-float(c)))
        regret = (parts["gap"] + parts["pruning"] + parts["rl"][0]).numpy()
        mean, low, high = (float(v) for v in mean_ci(regret, config.confidence))
        return {"budget": int(k), "penalty": float(c), "regret": mean, "half_width": (high - low) / 2,
                "pruning_error": float(parts["pruning"].mean()), "fallbacks": int(empty.sum()),
                "regret_trials": regret.tolist()}

    items = itertools.product(config.surface.budgets, config.surface.penalties)
    return run.map(cell, items, "T4 surface", "theory/t4/surface")


def run(config: DictConfig, run) -> dict:
    families = {}
    for overrides in _family_overrides(config):
        family = make_env(config.env, **overrides)
        families[family.mdps.n_actions] = family
    points = granularity_points(config, families, run)
    headline = {"n_actions": max(families), "n": max(config.sample_sizes), "budget": max(config.rl_budgets)}
    cells = regret_surface(config, families[headline["n_actions"]], run)
    K, C = len(config.surface.budgets), len(config.surface.penalties)
    surface = np.array([cell["regret_trials"] for cell in cells]).T.reshape(-1, K, C)    # (trials, K, C)
    best = best_cell(surface, config.confidence)
    best_row = cells[best["index"][0] * C + best["index"][1]]
    rows, compared = curve_rows(config, points), comparisons(config, points)
    summary_surface = {"budgets": list(config.surface.budgets), "penalties": list(config.surface.penalties),
                       "regret": surface.mean(0).tolist(),
                       "half_width": np.array([cell["half_width"] for cell in cells]).reshape(K, C).tolist(),
                       "tied_with_best": best["tied"].tolist()}
    return {
        "n_actions": headline["n_actions"],
        "abstraction_final_regret": matching(rows, granularity="abstract", **headline)["regret"],
        "primitive_final_regret": matching(rows, granularity="primitive", **headline)["regret"],
        "abstraction_vs_primitive": matching(compared, **headline),
        "comparisons": compared,
        "empty_fallbacks": {**{g: fallbacks(config, points, g) for g in GRANULARITIES},
                            "surface": sum(cell["fallbacks"] for cell in cells)},
        "curves": rows,
        "surface": summary_surface,
        "surface_best": {"budget": best_row["budget"], "penalty": best_row["penalty"], "regret": best_row["regret"],
                         "half_width": best_row["half_width"], "separated": best["separated"],
                         "n_tied": int(best["tied"].sum())},
        "figures": [str(path) for path in draw(config, rows, summary_surface, headline["n_actions"], run)],
    }


def matching(rows: list[dict], **where) -> dict:
    """The one row whose keys equal ``where``."""
    return next(row for row in rows if all(row[key] == value for key, value in where.items()))


def fallbacks(config: DictConfig, points: list[dict], granularity: str) -> int:
    """Datasets of n >= 1 samples at ``granularity`` that revealed nothing (their Z_hat fell back to the full set)."""
    return sum(count for point in points if point["granularity"] == granularity
               for n, count in zip(config.sample_sizes, point["fallbacks"]) if n > 0)


def draw(config: DictConfig, rows: list[dict], surface: dict, headline: int, run):
    fig, (left, middle, right) = figure(3, width=FULL, height=2.8)
    styles = dict(zip(config.sample_sizes, ("-", "--", ":", "-.") * len(config.sample_sizes)))
    for color, granularity in zip(("C0", "C1"), GRANULARITIES):
        for n in config.sample_sizes:
            curve = [row for row in rows
                     if (row["granularity"], row["n_actions"], row["n"]) == (granularity, headline, n)]
            budgets = [row["budget"] for row in curve]
            left.plot(budgets, [row["regret"] for row in curve], styles[n], color=color,
                      label=f"{granularity}, $|D_E|$={n}")
            left.fill_between(budgets, [row["low"] for row in curve], [row["high"] for row in curve], color=color,
                              alpha=0.15)
            final = [row for row in rows if (row["granularity"], row["n"], row["budget"]) ==
                     (granularity, n, max(config.rl_budgets))]
            middle.errorbar([row["n_actions"] for row in final], [row["regret"] for row in final],
                            yerr=[[row["regret"] - row["low"] for row in final],
                                  [row["high"] - row["regret"] for row in final]],
                            fmt="o" + styles[n], color=color, capsize=3, label=f"{granularity}, $|D_E|$={n}")
    log_axes(left, config.rl_budgets, logy=False)
    left.set(xlabel="RL budget (primitive steps)", ylabel="regret at $s_0$", title=f"$|A|$ = {headline}")
    left.legend()
    middle.set_xscale("log", base=2)
    middle.set(xlabel="$|A|$ (primitive actions)", ylabel="regret at $s_0$",
               title=f"after {max(config.rl_budgets)} steps")
    draw_surface(right, fig, surface)
    return run.save_figure(fig, "t4_abstraction")


def draw_surface(ax, fig, surface: dict) -> None:
    """Mean regret per (k, c) cell with its interval half-width; cells tied with the best are outlined."""
    mean, half = np.array(surface["regret"]), np.array(surface["half_width"])
    image = ax.imshow(mean, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(surface["penalties"])), [f"{c:g}" for c in surface["penalties"]])
    ax.set_yticks(range(len(surface["budgets"])), [str(k) for k in surface["budgets"]])
    ax.set(xlabel="switching penalty $c$", ylabel="budget $k$ (decisions kept)", title="regret (□: tied with best)")
    ax.grid(False)
    for (i, j), value in np.ndenumerate(mean):
        ax.text(j, i, f"{value:.3f}\n±{half[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
        if surface["tied_with_best"][i][j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="w", linewidth=2))
    fig.colorbar(image, ax=ax, label="regret")

