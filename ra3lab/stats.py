"""Statistics of noisy results, as pure numpy/scipy functions: the one home of every interval, test and fit.

Results over seeds, as rliable (Agarwal et al. 2021) computes them: scores are ndarray[runs, tasks] (a run
is one seed; a 1-D array is one task); curves add a trailing steps axis. Intervals come from the stratified
bootstrap: each draw resamples runs with replacement independently within every task, and the interval is the
percentile interval of the statistic over ``reps`` draws. Random functions take ``rng``, a np.random.Generator
or a seed. :func:`minimum_detectable_difference` says how large a difference between two such estimates must
be to show; :func:`mean_ci` and :func:`standard_error` are the Student-t view of a mean over seeds, and
:func:`binomial_upper_bound` the exact bound of a success rate.

Fits that set measurements against predicted scalings: log-log slopes with t-intervals
(:func:`loglog_slope`, :func:`loglog_slope_within`) and rank correlation (:func:`spearman`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from ra3lab.errors import check

Rng = np.random.Generator | int


def iqm(scores, axis: int | None = None):
    """Interquartile mean of ``scores`` along ``axis`` (all values when None): the mean after cutting
    int(n / 4) values from each end, as scipy.stats.trim_mean(scores, 0.25) does."""
    return stats.trim_mean(np.asarray(scores, dtype=float), 0.25, axis=axis)


def stratified_bootstrap_ci(scores, statistic: Callable = iqm, reps: int = 2000, confidence: float = 0.95,
                            rng: Rng = 0):
    """(point, low, high) of ``statistic`` with a stratified-bootstrap percentile interval.

    ``scores``: ndarray[runs, tasks, ...] (trailing axes travel with their run), or a dict
    {name: such an array}, which gives {name: (point, low, high)}, the names drawn in turn from one rng.
    ``statistic`` maps an array of that shape to a float or an ndarray; the three results have its shape.
    """
    if isinstance(scores, dict):
        rng = np.random.default_rng(rng)
        return {name: stratified_bootstrap_ci(value, statistic, reps, confidence, rng)
                for name, value in scores.items()}
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(rng)
    scores = _runs_by_tasks(scores, "scores")
    draws = np.array([statistic(_resample(scores, rng)) for _ in range(reps)])
    return _interval(statistic(scores), draws, confidence)


def curve_bands(curves, statistic: Callable = iqm, reps: int = 2000, confidence: float = 0.95, rng: Rng = 0):
    """(point[steps], low[steps], high[steps]): ``statistic`` over the runs x tasks values of each step of
    ``curves`` ndarray[runs, tasks, steps], with stratified-bootstrap bands (whole curves are resampled).

    ``statistic(values, axis=0)`` reduces values ndarray[runs * tasks, steps]: iqm, np.mean, np.median.
    """
    curves = np.asarray(curves, dtype=float)
    check(curves.ndim == 3, "curves", curves.shape, "must be ndarray[runs, tasks, steps]")
    steps = curves.shape[2]
    return stratified_bootstrap_ci(curves, lambda values: statistic(values.reshape(-1, steps), axis=0), reps,
                                   confidence, rng)


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + P(X = Y) / 2 for a run X of x ndarray[runs_x, tasks] and a run Y of y ndarray[runs_y, tasks]
    on the same task, averaged over tasks: per task the Mann-Whitney U statistic of x against y over runs_x * runs_y."""
    x, y = _score_pair(x, y)
    above, tied = x[:, None, :] > y[None, :, :], x[:, None, :] == y[None, :, :]
    return float((above + 0.5 * tied).mean(axis=(0, 1)).mean())


def probability_of_improvement_ci(x, y, reps: int = 2000, confidence: float = 0.95, rng: Rng = 0):
    """(point, low, high) of :func:`probability_of_improvement`; each draw resamples x and y independently,
    stratified by task."""
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(rng)
    x, y = _score_pair(x, y)
    draws = np.array([probability_of_improvement(_resample(x, rng), _resample(y, rng)) for _ in range(reps)])
    return _interval(probability_of_improvement(x, y), draws, confidence)


def steps_to_threshold(curve, steps, threshold: float):
    """The first of ``steps`` ndarray[steps] at which ``curve`` ndarray[..., steps] (a pass rate) is at
    least ``threshold``, ndarray[...] (a float for one curve); np.inf where it never is."""
    check(0 <= threshold <= 1, "threshold", threshold, "must lie in [0, 1]: the curves are pass rates")
    curve, steps = _curve(curve, steps, least=1)
    reached = curve >= threshold
    return np.where(reached.any(axis=-1), steps[reached.argmax(axis=-1)], np.inf)[()]


def area_under_curve(curve, steps):
    """Trapezoid area under ``curve`` ndarray[..., steps] over ``steps`` ndarray[steps], divided by the step
    range: the curve's mean level, in [0, 1] for pass rates. ndarray[...] (a float for one curve)."""
    curve, steps = _curve(curve, steps, least=2)
    return (np.trapezoid(curve, steps, axis=-1) / (steps[-1] - steps[0]))[()]


def mean_ci(values, confidence: float = 0.95):
    """(mean, low, high) over ``values`` ndarray[seeds, ...] with a Student-t interval (seeds - 1 degrees of
    freedom); low and high are nan for a single seed."""
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")
    values = _seeds(values)
    mean, half = values.mean(axis=0), _t_half_width(_spread(values), len(values) - 1, confidence) / np.sqrt(len(values))
    return mean[()], (mean - half)[()], (mean + half)[()]


def standard_error(values):
    """The standard error of the mean over ``values`` ndarray[seeds, ...]: std (ddof 1) / sqrt(seeds), in the
    units of the values; ndarray[...] (a float for one sample), nan for a single seed."""
    values = _seeds(values)
    return (_spread(values) / np.sqrt(len(values)))[()]


def interval_se(low, high, confidence: float = 0.95):
    """The standard error that a ``confidence`` interval [low, high] of a roughly normal estimate implies:
    (high - low) / (2 z_{(1 + confidence) / 2}), in the units of the bounds. ``low``, ``high``: floats or
    ndarrays of one broadcast shape, which the result has (a float for scalars). inf where only ``high`` is
    inf (an unbounded interval), nan where both bounds are inf (the estimate itself is never finite)."""
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    check(not np.any(high < low), "high", high, "must not lie below low")
    with np.errstate(invalid="ignore"):  # inf - inf is nan, as documented
        return ((high - low) / (2 * stats.norm.ppf((1 + confidence) / 2)))[()]


def minimum_detectable_difference(se_a, se_b, alpha: float = 0.05, power: float = 0.8):
    """The smallest true difference between two independent estimates with standard errors ``se_a`` and ``se_b``
    that a two-sided z-test at level ``alpha`` detects with probability ``power``:
    (z_{1 - alpha/2} + z_power) sqrt(se_a^2 + se_b^2), in the units of the standard errors. ``se_a``, ``se_b``:
    floats or ndarrays of one broadcast shape, which the result has (a float for scalars); nan and inf pass through.

    Beside it, two 95% intervals of half-widths w = 1.96 se stop overlapping at a difference of w_a + w_b; for
    equal standard errors that is 3.92 se against an MDD of 3.96 se (alpha 0.05, power 0.8): inits whose true
    values differ by less than about the sum of their half-widths cannot be told apart.
    """
    check(0 < alpha < 1, "alpha", alpha, "must lie in (0, 1)")
    check(0 < power < 1, "power", power, "must lie in (0, 1)")
    se_a, se_b = np.asarray(se_a, dtype=float), np.asarray(se_b, dtype=float)
    check(not np.any(se_a < 0), "se_a", se_a, "standard errors must be >= 0")
    check(not np.any(se_b < 0), "se_b", se_b, "standard errors must be >= 0")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return (z * np.sqrt(se_a**2 + se_b**2))[()]


def binomial_upper_bound(successes, trials: int, confidence: float = 0.95):
    """One-sided Clopper-Pearson upper ``confidence`` bound of a success probability seen ``successes`` times
    (a count, or an ndarray of counts, which the result's shape follows) in ``trials`` trials: the ``confidence``
    quantile of Beta(successes + 1, trials - successes), 1 where every trial succeeded."""
    check(trials >= 1, "trials", trials, "must be >= 1")
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")
    successes = np.asarray(successes, dtype=float)
    check(bool(np.all((successes >= 0) & (successes <= trials))), "successes", successes, f"must lie in [0, {trials}]")
    fails = np.maximum(trials - successes, 1)
    return np.where(successes < trials, stats.beta.ppf(confidence, successes + 1, fails), 1.0)[()]


def binomial_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(share, low, high): ``successes`` of ``trials`` with its two-sided Wilson score interval (scipy's
    ``binomtest(...).proportion_ci(method="wilson")``), which stays inside [0, 1] and is not empty at 0 or 1."""
    check(trials >= 1, "trials", trials, "must be >= 1")
    check(0 <= successes <= trials, "successes", successes, f"must lie in [0, {trials}]")
    interval = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence, method="wilson")
    return successes / trials, float(interval.low), float(interval.high)


def spearman(x, y) -> dict:
    """Spearman rank correlation rho of x and y (1-d, one length, at least 3 points) and its two-sided p-value."""
    x, y = _points(x, y)
    result = stats.spearmanr(x, y)
    return {"rho": float(result.statistic), "p": float(result.pvalue)}


def loglog_slope(x, y, confidence: float = 0.95) -> dict:
    """Least squares ``log y = intercept + slope log x`` (natural logs), i.e. y ~ e^intercept x^slope.

    Returns slope, its t-based confidence interval [low, high] (n - 2 degrees of freedom),
    intercept and n. x and y must be positive; x must not be constant.
    """
    x, y = _points(x, y)
    log_x, log_y = _logs(x, y, confidence)
    check(bool(np.ptp(x) > 0), "x", x.tolist(), "must not be constant")
    centred = log_x - log_x.mean()
    slope = float(centred @ (log_y - log_y.mean()) / (centred @ centred))
    intercept = float(log_y.mean() - slope * log_x.mean())
    residuals = log_y - intercept - slope * log_x   # 0 for a perfect fit
    return _slope_interval(slope, residuals, float(centred @ centred), len(x) - 2, confidence) | {
        "intercept": intercept, "n": len(x)}


def loglog_slope_within(x, y, groups, confidence: float = 0.95) -> dict:
    """Least squares ``log y = a_g + slope log x`` with one intercept a_g per group g: the slope in x
    at fixed group, pooled over groups (e.g. y against 1/(1 - gamma_bar) at fixed tau, across gammas).

    x, y > 0 and groups (any labels) are 1-d of one length; x must vary inside some group.
    Returns slope, its t-based confidence interval [low, high] (n - G - 1 degrees of freedom, G groups),
    n and groups.
    """
    x, y = _points(x, y)
    _, first, labels = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    labels = labels.ravel()
    check(len(labels) == len(x), "groups", len(labels), f"need one group label per point ({len(x)})")
    log_x, log_y = _logs(x, y, confidence)
    dof = len(x) - len(first) - 1
    check(dof >= 1, "n", len(x), f"need at least {len(first) + 2} points for {len(first)} groups")

    def centred(values: np.ndarray) -> np.ndarray:   # from the group's first point, so a constant group is exactly 0
        shifted = values - values[first][labels]
        return shifted - (np.bincount(labels, shifted) / np.bincount(labels))[labels]

    centred_x, centred_y = centred(log_x), centred(log_y)
    spread = float(centred_x @ centred_x)
    check(spread > 0, "x", x.tolist(), "must vary inside at least one group")
    slope = float(centred_x @ centred_y / spread)
    return _slope_interval(slope, centred_y - slope * centred_x, spread, dof, confidence) | {
        "n": len(x), "groups": len(first)}


def _t_half_width(se, dof: int, confidence: float):
    """Half the width of a two-sided Student-t ``confidence`` interval with ``dof`` degrees of freedom around an
    estimate with standard error ``se`` (its units and shape)."""
    return stats.t.ppf((1 + confidence) / 2, dof) * se


def _slope_interval(slope: float, residuals: np.ndarray, spread: float, dof: int, confidence: float) -> dict:
    """slope with its t-interval [low, high]: standard error sqrt(residuals^2 / dof / spread), where ``spread``
    is the sum of squares of the centred log x."""
    half = float(_t_half_width(np.sqrt(residuals @ residuals / dof / spread), dof, confidence))
    return {"slope": slope, "low": slope - half, "high": slope + half}


def _points(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float arrays, checked to be 1-d of one length with at least 3 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    check(x.ndim == 1 and x.shape == y.shape, "x, y", (x.shape, y.shape), "must be 1-d arrays of one length")
    check(len(x) >= 3, "n", len(x), "need at least 3 points")
    return x, y


def _logs(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(log x, log y) of the :func:`_points` x and y, checked to be > 0; ``confidence`` checked to lie in (0, 1)."""
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")
    check(bool((x > 0).all() and (y > 0).all()), "x, y", "non-positive entries", "must be > 0 to take logs")
    return np.log(x), np.log(y)


def _seeds(values) -> np.ndarray:
    """``values`` as a float array [seeds, ...] with at least one seed."""
    values = np.asarray(values, dtype=float)
    check(values.ndim >= 1 and len(values) >= 1, "values", values.shape, "must be ndarray[seeds, ...] with a seed")
    return values


def _spread(values: np.ndarray) -> np.ndarray:
    """The sample standard deviation (ddof 1) over the seeds of ``values`` [seeds, ...]: ndarray[...], nan for one."""
    return values.std(axis=0, ddof=1) if len(values) > 1 else np.full(values.shape[1:], np.nan)


def _check_bootstrap(reps: int, confidence: float) -> None:
    check(reps >= 1, "reps", reps, "must be >= 1 bootstrap draw")
    check(0 < confidence < 1, "confidence", confidence, "must lie in (0, 1)")


def _runs_by_tasks(scores, name: str) -> np.ndarray:
    """``scores`` as a float array [runs, tasks, ...] with at least one run and task; [runs] becomes [runs, 1]."""
    scores = np.asarray(scores, dtype=float)
    scores = scores[:, None] if scores.ndim == 1 else scores
    check(scores.ndim >= 2 and scores.shape[0] >= 1 and scores.shape[1] >= 1, name, scores.shape,
          "must be ndarray[runs, tasks] with at least one run and one task")
    return scores


def _score_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _runs_by_tasks(x, "x"), _runs_by_tasks(y, "y")
    check(x.ndim == 2, "x", x.shape, "must be ndarray[runs, tasks]")
    check(y.ndim == 2 and y.shape[1] == x.shape[1], "y", y.shape, f"must be ndarray[runs, {x.shape[1]}] like x")
    return x, y


def _resample(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One stratified bootstrap draw of scores[runs, tasks, ...]: runs picked with replacement per task."""
    runs, tasks = scores.shape[:2]
    return scores[rng.integers(runs, size=(runs, tasks)), np.arange(tasks)]


def _interval(point, draws: np.ndarray, confidence: float):
    low, high = np.percentile(draws, [50 * (1 - confidence), 50 * (1 + confidence)], axis=0)
    return np.asarray(point, dtype=float)[()], low[()], high[()]


def _curve(curve, steps, least: int) -> tuple[np.ndarray, np.ndarray]:
    """``curve`` [..., steps] and ``steps`` as float arrays, checked to match with ``least`` increasing steps."""
    curve, steps = np.asarray(curve, dtype=float), np.asarray(steps, dtype=float)
    check(steps.ndim == 1 and len(steps) >= least and bool(np.all(np.diff(steps) > 0)), "steps",
          np.array2string(steps, threshold=8), f"must be at least {least} increasing step numbers")
    check(curve.ndim >= 1 and curve.shape[-1] == len(steps), "curve", curve.shape,
          f"must be ndarray[..., {len(steps)}], one value per step")
    return curve, steps
