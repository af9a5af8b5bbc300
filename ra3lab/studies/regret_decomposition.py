"""T1 — Lemma 3.2: E[V*_M - V^pi_M] = E[Delta(M, Z_hat)] + E[V*_{M|Z_hat} - V^pi_{M|Z_hat}].

The identity holds for any Z_hat when pi only uses Z_hat, so its residual guards the implementation.
Each side is computed along a different path: the left side and Delta with masks over the full
option set, the RL error on option models rebuilt from the kept options alone. The policy's value
is also estimated by Monte-Carlo rollouts of the gymnasium environment, an independent check of the
option models themselves.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from ra3lab.envs.option_env import OptionMDPEnv
from ra3lab.errors import check
from ra3lab.mdp.planning import optimal_values, start_values, stochastic_policy_evaluation
from ra3lab.mdp.pruning import pruning_error
from ra3lab.mdp.smdp import Options, option_models
from ra3lab.plots.style import FULL, figure
from ra3lab.stats import standard_error
from ra3lab.studies.common import generator, make_env
from ra3lab.theory.bounds import regret_decomposition


def validate(config: DictConfig) -> None:
    check(config.n_instances >= 1, "n_instances", config.n_instances, "need at least 1 instance")
    check(0 < config.keep_probability <= 1, "keep_probability", config.keep_probability, "must lie in (0, 1]")
    check(config.mc_episodes >= 0, "mc_episodes", config.mc_episodes, "must be >= 0")
    check(config.mc_horizon >= 1, "mc_horizon", config.mc_horizon, "must be >= 1")
    make_env(config.env, n_tasks=1)


def sub_options(options: Options, kept: torch.Tensor) -> Options:
    """The options at the indices ``kept`` (K,), as a decision set of their own."""
    return Options(options.actions[kept], options.length_probs[kept], tuple(options.names[i] for i in kept.tolist()))


def monte_carlo_value(family, probs: torch.Tensor, task: int, episodes: int, horizon: int,
                      seed: int) -> tuple[float, float]:
    """Mean and standard error of the discounted return of the policy probs (Z, S) from s0 of ``task``."""
    env = OptionMDPEnv(family=family, granularity="abstract", max_decisions=horizon)
    rng = np.random.default_rng(seed)
    returns = []
    env.reset(seed=seed)
    for _ in range(episodes):
        state, _ = env.reset(options={"task": task})
        total, discount, done = 0.0, 1.0, False
        while not done:
            option = rng.choice(probs.shape[0], p=probs[:, state].numpy())
            state, reward, terminated, truncated, info = env.step(int(option))
            total += discount * reward
            discount *= info["discount"]
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(standard_error(returns))


def one_instance(config: DictConfig, index: int) -> dict:
    """Draw a family, a random Z_hat and a random stochastic policy over Z_hat; measure both sides."""
    family = make_env(config.env, seed=int(config.seed) * 1000 + index)
    rng = generator(int(config.seed) * 1000 + index)
    Z, S = len(family.options), family.mdps.n_states
    keep = torch.rand(Z, generator=rng) < config.keep_probability
    keep[torch.randint(Z, (1,), generator=rng)] = True                     # Z_hat is never empty
    logits = torch.randn(Z, S, generator=rng, dtype=torch.float64).masked_fill(~keep.unsqueeze(1), float("-inf"))
    probs = logits.softmax(0)                                               # (Z, S), zero outside Z_hat

    full = family.abstract
    v_star = start_values(full, optimal_values(full))
    v_pi = start_values(full, stochastic_policy_evaluation(full, probs.expand(len(full), Z, S)))
    delta = pruning_error(full, keep)

    kept = keep.nonzero().squeeze(1)
    restricted = option_models(family.mdps, sub_options(family.options, kept))
    v_star_restricted = start_values(restricted, optimal_values(restricted))
    v_pi_restricted = start_values(restricted,
                                   stochastic_policy_evaluation(restricted, probs[kept].expand(len(full), -1, S)))

    parts = regret_decomposition(v_star.numpy(), v_star_restricted.numpy(), v_pi_restricted.numpy())
    lhs = float((v_star - v_pi).mean())
    rhs = float(delta.mean()) + float(np.mean(parts["rl_error"]))
    result = {"instance": index, "regret": lhs, "pruning_error": float(delta.mean()),
              "rl_error": float(np.mean(parts["rl_error"])), "residual": abs(lhs - rhs),
              "kept": int(keep.sum()), "n_options": Z}
    if config.mc_episodes and index < config.mc_instances:
        mean, stderr = monte_carlo_value(family, probs, 0, int(config.mc_episodes), int(config.mc_horizon), index)
        result.update(mc_value=mean, mc_stderr=stderr, exact_value=float(v_pi[0]),
                      mc_z=(mean - float(v_pi[0])) / max(stderr, 1e-12))
    return result


def run(config: DictConfig, run) -> dict:
    rows = run.map(lambda index, _: one_instance(config, index), range(int(config.n_instances)), "T1 instances",
                   "theory/t1")
    residuals = np.array([row["residual"] for row in rows])
    mc_z = np.array([row["mc_z"] for row in rows if "mc_z" in row])

    fig, (left, right) = figure(2, width=FULL, height=2.8)
    lhs = [row["regret"] for row in rows]
    rhs = [row["pruning_error"] + row["rl_error"] for row in rows]
    left.plot(lhs, rhs, "o", ms=4, label="instance")
    lo, hi = min(lhs + rhs), max(lhs + rhs)
    left.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="identity")
    left.set(xlabel=r"regret $E[V^*_M - V^\pi_M]$", ylabel=r"$E[\Delta] + $ RL error in $\hat Z$",
             title=f"Lemma 3.2 (max residual {residuals.max():.1e})")
    left.legend()
    index = np.arange(len(rows))
    right.bar(index, [row["pruning_error"] for row in rows], label=r"pruning error $E[\Delta(M,\hat Z)]$")
    right.bar(index, [row["rl_error"] for row in rows], bottom=[row["pruning_error"] for row in rows],
              label=r"RL error inside $\hat Z$")
    right.set(xlabel="instance", ylabel="regret at $s_0$", title="decomposition per instance")
    right.set_ylim(top=1.4 * max(lhs))                                      # headroom for the legend
    right.legend(loc="upper center")
    figures = run.save_figure(fig, "t1_regret_decomposition")
    return {
        "lemma_3_2_max_residual": float(residuals.max()),
        "n_instances": len(rows),
        "mean_pruning_error": float(np.mean([row["pruning_error"] for row in rows])),
        "mean_rl_error": float(np.mean([row["rl_error"] for row in rows])),
        "mc_max_abs_z": float(np.abs(mc_z).max()) if len(mc_z) else None,
        "mc_checks": len(mc_z),
        "figures": [str(path) for path in figures],
    }
