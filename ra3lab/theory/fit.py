"""Fits that set measurements against predicted scalings (pure numpy/scipy)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from ra3lab.errors import check


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    check(x.ndim == 1 and x.shape == y.shape, "x, y", (x.shape, y.shape), "must be 1-d arrays of one length")
    check(len(x) >= 3, "n", len(x), "need at least 3 points")
    return x, y


def loglog_slope(x, y, confidence: float = 0.95) -> dict:
    """Least squares ``log y = intercept + slope log x`` (natural logs), i.e. y ~ e^intercept x^slope.

    Returns slope, its t-based confidence interval [low, high] (n - 2 degrees of freedom),
    intercept and n. x and y must be positive; x must not be constant.
    """
    x, y = _pair(x, y)
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")
    check(bool((x > 0).all() and (y > 0).all()), "x, y", "non-positive entries", "must be > 0 to take logs")
    check(bool(np.ptp(x) > 0), "x", x.tolist(), "must not be constant")
    log_x, log_y = np.log(x), np.log(y)
    centred = log_x - log_x.mean()
    slope = float(centred @ (log_y - log_y.mean()) / (centred @ centred))
    intercept = float(log_y.mean() - slope * log_x.mean())
    residuals = log_y - intercept - slope * log_x
    stderr = np.sqrt(residuals @ residuals / (len(x) - 2) / (centred @ centred))   # 0 for a perfect fit
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 2) * stderr)
    return {"slope": slope, "low": slope - half, "high": slope + half, "intercept": intercept, "n": len(x)}


def spearman(x, y) -> dict:
    """Spearman rank correlation rho of x and y and its two-sided p-value."""
    x, y = _pair(x, y)
    result = stats.spearmanr(x, y)
    return {"rho": float(result.statistic), "p": float(result.pvalue)}


def loglog_slope_within(x, y, groups, confidence: float = 0.95) -> dict:
    """Least squares ``log y = a_g + slope log x`` with one intercept a_g per group g: the slope in x
    at fixed group, pooled over groups (e.g. y against 1/(1 - gamma_bar) at fixed tau, across gammas).

    x, y > 0 and groups (any labels) are 1-d of one length; x must vary inside some group.
    Returns slope, its t-based confidence interval [low, high] (n - G - 1 degrees of freedom, G groups),
    n and groups.
    """
    x, y = _pair(x, y)
    _, first, labels = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    labels = labels.ravel()
    check(len(labels) == len(x), "groups", len(labels), f"need one group label per point ({len(x)})")
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")
    check(bool((x > 0).all() and (y > 0).all()), "x, y", "non-positive entries", "must be > 0 to take logs")
    dof = len(x) - len(first) - 1
    check(dof >= 1, "n", len(x), f"need at least {len(first) + 2} points for {len(first)} groups")

    def centred(values: np.ndarray) -> np.ndarray:   # from the group's first point, so a constant group is exactly 0
        shifted = values - values[first][labels]
        return shifted - (np.bincount(labels, shifted) / np.bincount(labels))[labels]

    centred_x, centred_y = centred(np.log(x)), centred(np.log(y))
    spread = float(centred_x @ centred_x)
    check(spread > 0, "x", x.tolist(), "must vary inside at least one group")
    slope = float(centred_x @ centred_y / spread)
    residuals = centred_y - slope * centred_x
    half = float(stats.t.ppf((1 + confidence) / 2, dof) * np.sqrt(residuals @ residuals / dof / spread))
    return {"slope": slope, "low": slope - half, "high": slope + half, "n": len(x), "groups": len(first)}
