"""The theory's formulas as pure numpy functions (scalars or arrays, broadcast elementwise).

Notation as in RA3.md section 1: Z the decision set, Z_hat the pruned set, Z_eps the smallest
subset with expected pruning error <= eps, sigma the probability that an expert reveals a decision,
gamma_bar = sup_{s,z} E[gamma^tau | s, z].
"""

from __future__ import annotations

import numpy as np

from ra3lab.errors import check


def _all(condition) -> bool:
    return bool(np.all(condition))


def regret_decomposition(v_star, v_star_restricted, v_pi, v_pi_restricted=None) -> dict:
    """Lemma 3.2 per task, from start values (B,) of one policy pi that only uses Z_hat:

        total         = V*_M(s0) - V^pi_M(s0)
        pruning_error = V*_M(s0) - V*_{M|Z_hat}(s0)                  (Delta(M, Z_hat))
        rl_error      = V*_{M|Z_hat}(s0) - V^pi_{M|Z_hat}(s0)
        residual      = total - pruning_error - rl_error

    ``v_pi`` is pi's value in M; ``v_pi_restricted`` its value in M|Z_hat, computed separately
    (defaults to v_pi). With both given, the residual is V^pi_{M|Z_hat} - V^pi_M, which is 0 when the
    restricted models are right; with v_pi alone it is 0 to round-off by construction.
    Returns the four arrays and their means over tasks: expected_pruning_error, expected_rl_error,
    expected_total, and max_abs_residual.
    """
    v_star, v_star_restricted, v_pi = (np.asarray(v, dtype=float) for v in (v_star, v_star_restricted, v_pi))
    v_pi_restricted = v_pi if v_pi_restricted is None else np.asarray(v_pi_restricted, dtype=float)
    shapes = {v.shape for v in (v_star, v_star_restricted, v_pi, v_pi_restricted)}
    check(len(shapes) == 1, "values", sorted(shapes), "v_star, v_star_restricted and v_pi must have one shape")
    parts = {
        "pruning_error": v_star - v_star_restricted,
        "rl_error": v_star_restricted - v_pi_restricted,
        "total": v_star - v_pi,
    }
    parts["residual"] = parts["total"] - parts["pruning_error"] - parts["rl_error"]
    return parts | {
        "expected_pruning_error": float(parts["pruning_error"].mean()),
        "expected_rl_error": float(parts["rl_error"].mean()),
        "expected_total": float(parts["total"].mean()),
        "max_abs_residual": float(np.abs(parts["residual"]).max()),
    }


def pruning_sample_bound(k, n_decisions, sigma, delta):
    """Expert samples for Theorem 3.5 up to its constant: ``K log(|Z| / delta) / sigma``, K = k."""
    check(_all(np.asarray(n_decisions) >= 1), "n_decisions", n_decisions, "|Z| must be >= 1")
    check(_all((np.asarray(k) >= 0) & (np.asarray(k) <= n_decisions)), "k", k, f"must lie in [0, |Z| = {n_decisions}]")
    check(_all((np.asarray(sigma) > 0) & (np.asarray(sigma) <= 1)), "sigma", sigma, "must lie in (0, 1]")
    check(_all((np.asarray(delta) > 0) & (np.asarray(delta) < 1)), "delta", delta, "must lie in (0, 1)")
    return np.asarray(k) * np.log(np.asarray(n_decisions) / np.asarray(delta)) / np.asarray(sigma)


def thm_3_5_samples_full(n_decisions, sigma, delta):
    """Theorem 3.5 with K = |Z| (arXiv summary): ``|Z| log(|Z| / delta) / sigma``."""
    return pruning_sample_bound(n_decisions, n_decisions, sigma, delta)


def thm_3_5_samples_eps(n_eps, n_decisions, sigma, delta):
    """Theorem 3.5 with K = |Z_eps| (ICLR summary): ``|Z_eps| log(|Z| / delta) / sigma``."""
    check(_all((np.asarray(n_eps) >= 0) & (np.asarray(n_eps) <= n_decisions)), "n_eps", n_eps,
          f"|Z_eps| must lie in [0, |Z| = {n_decisions}]")
    return pruning_sample_bound(n_eps, n_decisions, sigma, delta)


def _check_gamma_bar(gamma_bar) -> np.ndarray:
    gamma_bar = np.asarray(gamma_bar, dtype=float)
    check(_all((gamma_bar >= 0) & (gamma_bar < 1)), "gamma_bar", gamma_bar.tolist(), "must lie in [0, 1)")
    return gamma_bar


def effective_horizon(gamma_bar):
    """``1 / (1 - gamma_bar)``: decisions until discounting takes over."""
    return 1.0 / (1.0 - _check_gamma_bar(gamma_bar))


def thm_3_6_iterations(gamma_bar, r_max, eps):
    """Theorem 3.6: value-iteration sweeps to an eps-optimal policy,
    ``max(0, 1 / (1 - gamma_bar) * log(R_max / (eps (1 - gamma_bar))))`` (0 when the log is negative)."""
    gamma_bar = _check_gamma_bar(gamma_bar)
    check(_all(np.asarray(r_max) > 0), "r_max", r_max, "must be > 0")
    check(_all(np.asarray(eps) > 0), "eps", eps, "must be > 0")
    return np.maximum(0.0, np.log(np.asarray(r_max) / (np.asarray(eps) * (1 - gamma_bar))) / (1 - gamma_bar))


def gamma_bar_fixed(gamma, tau):
    """``gamma ** tau``: gamma_bar for options of deterministic length tau."""
    check(_all((np.asarray(gamma) > 0) & (np.asarray(gamma) < 1)), "gamma", gamma, "must lie in (0, 1)")
    check(_all(np.asarray(tau) >= 1), "tau", tau, "must be >= 1")
    return np.asarray(gamma, dtype=float) ** np.asarray(tau)
