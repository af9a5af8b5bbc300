"""ra3lab.stats, the one home of the package's statistics, checked against scipy's reference implementations
and hand values."""

import ast
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import ra3lab
from ra3lab import stats as ra3lab_stats
from ra3lab.errors import ConfigError
from ra3lab.stats import (
    area_under_curve,
    binomial_ci,
    binomial_upper_bound,
    curve_bands,
    interval_se,
    iqm,
    loglog_slope,
    loglog_slope_within,
    mean_ci,
    minimum_detectable_difference,
    probability_of_improvement,
    probability_of_improvement_ci,
    spearman,
    standard_error,
    steps_to_threshold,
    stratified_bootstrap_ci,
)


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([3, 100, 1, 2, -100, 2, 1, 3]) == 2.0  # mean of 1, 2, 2, 3: the outliers are cut
    assert iqm([-50, 1, 2, 3, 4, 5, 6, 50, 7, 8]) == 4.5  # n = 10: int(10 / 4) = 2 cut at each end
    scores = np.random.default_rng(0).standard_normal((10, 7))
    assert iqm(scores) == pytest.approx(stats.trim_mean(scores.ravel(), 0.25))
    assert np.allclose(iqm(scores, axis=0), stats.trim_mean(scores, 0.25, axis=0))


def test_the_bootstrap_interval_agrees_with_scipy_on_one_task():
    sample = np.random.default_rng(0).standard_normal(40)
    point, low, high = stratified_bootstrap_ci(sample, np.mean, reps=5000, rng=1)
    reference = stats.bootstrap((sample,), np.mean, n_resamples=5000, method="percentile", rng=2)
    assert point == pytest.approx(sample.mean())
    assert low == pytest.approx(reference.confidence_interval.low, abs=2e-2)
    assert high == pytest.approx(reference.confidence_interval.high, abs=2e-2)
    assert stratified_bootstrap_ci(sample[:, None], np.mean, reps=5000, rng=1) == (point, low, high)


def test_the_bootstrap_resamples_runs_within_each_task():
    # task 0 is always 0, task 1 always 1: a stratified draw keeps every task's runs, so the mean is fixed
    scores = np.array([[0.0, 1.0]] * 5)
    assert stratified_bootstrap_ci(scores, np.mean, reps=200) == (0.5, 0.5, 0.5)
    # per-task statistics see only their own task's runs
    scores = np.column_stack([np.arange(6.0), 10 + np.arange(6.0)])
    point, low, high = stratified_bootstrap_ci(scores, lambda s: s.mean(axis=0), reps=500)
    assert np.allclose(point, [2.5, 12.5]) and np.all(low >= [0, 10]) and np.all(high <= [5, 15])


def test_intervals_contain_the_point_and_shrink_with_more_runs():
    rng = np.random.default_rng(3)
    widths = []
    for runs in (5, 20, 80):
        point, low, high = stratified_bootstrap_ci(rng.uniform(size=(runs, 4)), reps=1000, rng=0)
        assert low <= point <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0
    assert stratified_bootstrap_ci(np.full((4, 3), 0.7), reps=10) == pytest.approx((0.7, 0.7, 0.7))


def test_the_bootstrap_is_seeded_and_takes_a_dict_of_algorithms():
    scores = {name: np.random.default_rng(i).uniform(size=(6, 3)) for i, name in enumerate(["ntp", "ra3"])}
    first = stratified_bootstrap_ci(scores, reps=300, rng=7)
    assert set(first) == {"ntp", "ra3"} and first == stratified_bootstrap_ci(scores, reps=300, rng=7)
    assert first != stratified_bootstrap_ci(scores, reps=300, rng=8)
    assert first["ntp"][0] == iqm(scores["ntp"])
    assert stratified_bootstrap_ci(scores["ntp"], reps=300, rng=np.random.default_rng(7)) == first["ntp"]


def test_curve_bands_follow_each_step():
    rng = np.random.default_rng(0)
    level = np.linspace(0.1, 0.9, 12)
    curves = np.clip(level + 0.05 * rng.standard_normal((8, 3, 12)), 0, 1)
    point, low, high = curve_bands(curves, reps=300, rng=1)
    assert point.shape == low.shape == high.shape == (12,)
    assert np.all(low <= point) and np.all(point <= high) and np.all(high - low < 0.1)
    assert np.allclose(point, [iqm(curves[..., step]) for step in range(12)])
    assert np.allclose(curve_bands(curves, np.mean, reps=10)[0], curves.mean(axis=(0, 1)))


def test_probability_of_improvement_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, (7, 1)).astype(float), rng.integers(0, 5, (9, 1)).astype(float)  # many ties
    assert probability_of_improvement(x, y) == pytest.approx(stats.mannwhitneyu(x[:, 0], y[:, 0]).statistic / 63)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((5, 4)) + 0.5
    per_task = [stats.mannwhitneyu(x[:, task], y[:, task]).statistic / 30 for task in range(4)]
    assert probability_of_improvement(x, y) == pytest.approx(np.mean(per_task))
    assert probability_of_improvement(y + 10, y) == 1.0 and probability_of_improvement(y, y + 10) == 0.0
    assert probability_of_improvement(x, x) == 0.5


def test_probability_of_improvement_interval():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.6, 0.1, (10, 3)), rng.normal(0.5, 0.1, (12, 3))
    point, low, high = probability_of_improvement_ci(x, y, reps=500, rng=0)
    assert point == probability_of_improvement(x, y) and 0.5 < low <= point <= high <= 1
    assert probability_of_improvement_ci(x + 1, y, reps=50) == (1.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match="like x") as error:
        probability_of_improvement(x, y[:, :2])
    assert error.value.field == "y"


def test_steps_to_threshold():
    steps = np.array([0, 100, 200, 300])
    curves = np.array([[0.1, 0.5, 0.8, 0.9], [0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.2, 0.3]])
    assert steps_to_threshold(curves, steps, 0.5).tolist() == [100.0, 0.0, np.inf]
    assert steps_to_threshold(curves[0], steps, 0.9) == 300.0  # reaching exactly counts
    assert steps_to_threshold(curves[0], steps, 0.0) == 0.0 and steps_to_threshold(curves[0], steps, 1.0) == np.inf
    assert steps_to_threshold(np.stack([curves, curves]), steps, 0.5).shape == (2, 3)
    for threshold in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="pass rates") as error:
            steps_to_threshold(curves, steps, threshold)
        assert error.value.field == "threshold"


def test_area_under_curve_is_the_normalised_trapezoid():
    steps = np.array([0.0, 1.0, 3.0])
    assert area_under_curve([1.0, 1.0, 1.0], steps) == 1.0 and area_under_curve([0, 0, 0], steps) == 0.0
    assert area_under_curve([0.0, 1.0, 1.0], steps) == pytest.approx((0.5 + 2.0) / 3)
    assert area_under_curve([0.0, 1.0], [10, 20]) == 0.5
    curves = np.random.default_rng(0).uniform(size=(4, 3))
    assert np.allclose(area_under_curve(curves, steps), np.trapezoid(curves, steps, axis=-1) / 3)
    for bad in ([0.0], [0.0, 2.0, 1.0]):
        with pytest.raises(ConfigError) as error:
            area_under_curve(np.zeros(len(bad)), bad)
        assert error.value.field == "steps"
    with pytest.raises(ConfigError) as error:
        area_under_curve(np.zeros(4), steps)
    assert error.value.field == "curve"


def test_mean_ci_is_the_student_t_interval():
    values = np.array([0.42, 0.51, 0.47, 0.39, 0.55])
    mean, low, high = mean_ci(values, 0.9)
    reference = stats.t.interval(0.9, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(reference)
    per_metric = mean_ci(np.column_stack([values, 2 * values]))
    assert np.allclose(per_metric[1], [mean_ci(values)[1], mean_ci(2 * values)[1]])
    assert mean_ci([0.3, 0.3, 0.3]) == (0.3, 0.3, 0.3)
    one = mean_ci([0.3])
    assert one[0] == 0.3 and np.isnan(one[1]) and np.isnan(one[2])


def test_minimum_detectable_difference_by_hand():
    # (z_0.975 + z_0.8) * sqrt(0.05^2 + 0.05^2) = (1.959964 + 0.841621) * 0.0707107
    assert minimum_detectable_difference(0.05, 0.05) == pytest.approx(0.1981020, abs=1e-7)
    assert minimum_detectable_difference(0.03, 0.04) == pytest.approx(2.801585 * 0.05, abs=1e-6)
    assert minimum_detectable_difference(0.05, 0.0, alpha=0.01, power=0.9) == pytest.approx(3.857381 * 0.05, abs=1e-6)
    # at the MDD the two-sided test rejects with probability `power` (its far tail is negligible)
    mdd, se = minimum_detectable_difference(0.02, 0.05), np.hypot(0.02, 0.05)
    assert stats.norm.sf(stats.norm.ppf(0.975) - mdd / se) == pytest.approx(0.8)
    assert minimum_detectable_difference(0.0, 0.0) == 0.0
    both = minimum_detectable_difference(np.array([0.05, 0.0, np.inf, np.nan]), 0.05)
    assert both.shape == (4,) and both[0] == pytest.approx(2.801585 * 0.0707107, abs=1e-6)
    assert both[1] == pytest.approx(2.801585 * 0.05, abs=1e-6) and both[2] == np.inf and np.isnan(both[3])


def test_the_standard_error_of_an_interval_is_its_width_over_two_z():
    assert interval_se(0.5 - 1.959964 * 0.1, 0.5 + 1.959964 * 0.1) == pytest.approx(0.1, abs=1e-7)
    assert interval_se(0.0, 1.644854 * 2, confidence=0.9) == pytest.approx(1.0, abs=1e-6)
    # a bootstrap interval of a normal mean gives about its standard error
    sample = np.random.default_rng(0).normal(0, 1, 400)
    _, low, high = stratified_bootstrap_ci(sample, np.mean, reps=4000, rng=0)
    assert interval_se(low, high) == pytest.approx(stats.sem(sample), rel=0.1)
    assert np.allclose(interval_se([0.0, 1.0], [1.0, 1.0]), [1 / (2 * 1.959964), 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert interval_se(10.0, np.inf) == np.inf and np.isnan(interval_se(np.inf, np.inf))


@pytest.mark.parametrize("call, field", [
    (lambda: stratified_bootstrap_ci(np.ones((3, 2)), reps=0), "reps"),
    (lambda: stratified_bootstrap_ci(np.ones((3, 2)), confidence=1.0), "confidence"),
    (lambda: stratified_bootstrap_ci(np.ones((0, 2))), "scores"),
    (lambda: curve_bands(np.ones((3, 2))), "curves"),
    (lambda: probability_of_improvement(np.ones((3, 2, 2)), np.ones((3, 2))), "x"),
    (lambda: mean_ci([]), "values"),
    (lambda: mean_ci([1.0, 2.0], confidence=0.0), "confidence"),
    (lambda: minimum_detectable_difference(0.1, 0.1, alpha=0.0), "alpha"),
    (lambda: minimum_detectable_difference(0.1, 0.1, alpha=1.0), "alpha"),
    (lambda: minimum_detectable_difference(0.1, 0.1, power=0.0), "power"),
    (lambda: minimum_detectable_difference(0.1, 0.1, power=1.2), "power"),
    (lambda: minimum_detectable_difference(-0.1, 0.1), "se_a"),
    (lambda: minimum_detectable_difference(0.1, [0.1, -0.1]), "se_b"),
    (lambda: interval_se(1.0, 0.0), "high"),
    (lambda: interval_se(0.0, 1.0, confidence=1.0), "confidence"),
])
def test_bad_arguments_are_config_errors(call, field):
    with pytest.raises(ConfigError) as error:
        call()
    assert error.value.field == field


def test_loglog_slope_recovers_a_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    exact = loglog_slope(x, 3 * x**2)
    assert exact["slope"] == pytest.approx(2.0) and exact["intercept"] == pytest.approx(math.log(3))
    assert exact["high"] - exact["low"] < 1e-9 and exact["n"] == 5
    rng = np.random.default_rng(0)
    noisy = loglog_slope(x, 3 * x**-1 * np.exp(rng.normal(0, 0.1, 5)), confidence=0.99)
    assert noisy["low"] < -1.0 < noisy["high"] and noisy["low"] < noisy["slope"] < noisy["high"]


def test_spearman_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 1000])["rho"] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1.0)


@pytest.mark.parametrize("call, field", [
    (lambda: loglog_slope([1, 2], [1, 2]), "n"),
    (lambda: loglog_slope([1, 2, 3], [1, 0, 2]), "x, y"),
    (lambda: loglog_slope([1, 2, 3], [1, 2]), "x, y"),
    (lambda: loglog_slope([2, 2, 2], [1, 2, 3]), "x"),
    (lambda: loglog_slope([1, 2, 3], [1, 2, 3], confidence=1.0), "confidence"),
    (lambda: spearman([1, 2], [2, 1]), "n"),
])
def test_fits_reject_bad_inputs(call, field):
    with pytest.raises(ConfigError, match=f"^{field} = "):
        call()


def test_a_perfect_power_law_has_a_zero_width_interval():
    fit = loglog_slope([1, 2, 4, 8], [29, 29, 29, 29])
    assert fit["slope"] == fit["low"] == fit["high"] == 0.0
    fit = loglog_slope([1, 2, 4, 8], [3 * x**1.5 for x in (1, 2, 4, 8)])
    assert abs(fit["slope"] - 1.5) < 1e-12 and fit["high"] - fit["low"] < 1e-9


def test_slope_at_fixed_group_recovers_what_the_pooled_slope_hides():
    """y = c_g x^1.5 with c_g falling as x's range rises: pooled, y even seems to fall with x."""
    x = np.array([1, 2, 4, 10, 20, 40, 100, 200, 400.0])
    groups = np.repeat([0, 1, 2], 3)
    y = np.array([1.0, 1e-2, 1e-4])[groups] * x**1.5 * np.exp(np.random.default_rng(0).normal(0, 0.05, 9))
    within = loglog_slope_within(x, y, groups)
    assert within["low"] < 1.5 < within["high"] and within["high"] - within["low"] < 0.3 and within["groups"] == 3
    assert loglog_slope(x, y)["slope"] < 0
    with pytest.raises(ConfigError, match="must vary inside"):
        loglog_slope_within([1, 1, 2, 2.0], [1, 2, 3, 4.0], [0, 0, 1, 1])
    with pytest.raises(ConfigError, match="need at least 4 points for 2 groups"):
        loglog_slope_within([1, 2, 3.0], [1, 2, 3.0], [0, 0, 1])


def test_standard_error_is_scipys_sem():
    values = np.array([[0.42, 1.0], [0.51, 3.0], [0.47, 2.0], [0.39, 7.0], [0.55, 4.0]])
    assert np.allclose(standard_error(values), stats.sem(values))
    assert standard_error(values[:, 0]) == pytest.approx(stats.sem(values[:, 0]))
    assert standard_error([2.0, 2.0, 2.0]) == 0.0
    with warnings.catch_warnings():   # a single seed has no spread: nan, quietly
        warnings.simplefilter("error")
        assert np.isnan(standard_error([0.3])) and np.isnan(standard_error([[0.3, 0.4]])).all()
    with pytest.raises(ConfigError, match="^values = "):
        standard_error([])


def test_binomial_upper_bound_is_the_exact_one_sided_interval():
    for successes, trials in [(0, 10), (3, 10), (86, 100), (999, 1000)]:
        exact = stats.binomtest(successes, trials, alternative="less").proportion_ci(0.95, method="exact").high
        assert binomial_upper_bound(successes, trials) == pytest.approx(exact)
    assert binomial_upper_bound(0, 10, 0.9) == pytest.approx(1 - 0.1 ** (1 / 10))   # (1 - p)^n = 1 - confidence
    assert binomial_upper_bound(10, 10) == 1.0
    assert np.allclose(binomial_upper_bound(np.array([0, 10]), 10), [1 - 0.05 ** (1 / 10), 1.0])
    for call, field in [(lambda: binomial_upper_bound(11, 10), "successes"),
                        (lambda: binomial_upper_bound(0, 0), "trials"),
                        (lambda: binomial_upper_bound(1, 10, confidence=1.0), "confidence")]:
        with pytest.raises(ConfigError, match=f"^{field} = "):
            call()


def test_each_statistic_is_defined_once_in_the_package():
    """Every public function of ra3lab.stats is defined there and nowhere else in the package (no module keeps a
    copy under the same name), and scipy.stats is imported only there."""
    names = {name for name, value in vars(ra3lab_stats).items() if not name.startswith("_")
             and callable(value) and getattr(value, "__module__", None) == "ra3lab.stats"}
    assert {"probability_of_improvement", "loglog_slope", "mean_ci", "spearman", "binomial_upper_bound"} <= names
    package = Path(ra3lab.__file__).parent
    for path in package.rglob("*.py"):
        if path == package / "stats.py":
            continue
        nodes = list(ast.walk(ast.parse(path.read_text(), str(path))))
        defined = {node.name for node in nodes if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert not defined & names, f"{path.relative_to(package)} defines {sorted(defined & names)}"
        assert not any(map(_imports_scipy_stats, nodes)), f"{path.relative_to(package)} imports scipy.stats"


def _imports_scipy_stats(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("scipy.stats") for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scipy") and (
        node.module.startswith("scipy.stats") or any(alias.name == "stats" for alias in node.names))


def test_the_binomial_interval_is_wilsons_and_never_empty_at_the_ends():
    z2 = stats.norm.ppf(0.975) ** 2
    share, low, high = binomial_ci(0, 256)
    assert (share, low) == (0.0, 0.0) and high == pytest.approx(z2 / (256 + z2))        # Wilson's upper bound at 0
    share, low, high = binomial_ci(10, 20)
    assert share == 0.5 and low == pytest.approx(1 - high) and low < 0.5 < high           # symmetric at one half
    assert binomial_ci(20, 20)[2] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        binomial_ci(21, 20)
