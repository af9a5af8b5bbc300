"""The plotting suite's figures and tables on synthetic curves whose ordering is known by construction."""

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ra3lab import stats
from ra3lab.errors import ConfigError
from ra3lab.plots.curves import convergence_figure
from ra3lab.plots.style import ARMS, color, label, order, save
from ra3lab.plots.tables import convergence_table, run_scores, to_latex, to_markdown
from ra3lab.plots.theory import theory_figure

CEILING = {"base": 0.4, "ntp": 0.6, "ra3": 0.8}  # ra3 > ntp > base at every step; base never reaches 0.5
STEPS = np.arange(0, 200, 10)


def curves_table(ceiling=CEILING, seeds=3, task_sets=("humaneval", "mbpp")) -> pd.DataFrame:
    """Pass rates ceiling * (1 - exp(-step / 40)), shifted by 0.01 per seed and 0.02 on the second task set."""
    rows = [{"init": init, "seed": seed, "task_set": task_set, "step": step,
             "value": top * (1 - np.exp(-step / 40)) + 0.01 * seed + 0.02 * k}
            for init, top in ceiling.items() for seed in range(seeds) for k, task_set in enumerate(task_sets)
            for step in STEPS]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return curves_table()


@pytest.fixture(scope="module")
def summary(table):
    return convergence_table(table, threshold=0.5, reps=300, rng=0)


def test_the_convergence_table_ranks_the_inits_as_constructed(summary):
    assert list(summary.index) == ["base", "ntp", "ra3"] and (summary["seeds"] == 3).all()
    assert summary.loc["ra3", "auc"] > summary.loc["ntp", "auc"] > summary.loc["base", "auc"]
    assert summary.loc["ra3", "final"] > summary.loc["ntp", "final"] > summary.loc["base", "final"]
    assert summary.loc["ra3", "steps_to_threshold"] < summary.loc["ntp", "steps_to_threshold"]
    assert summary.loc["base", "steps_to_threshold"] == np.inf  # its ceiling, 0.4 + 0.04, is below 0.5
    for measure in ("auc", "steps_to_threshold", "final"):
        assert (summary[f"{measure}_low"] <= summary[measure]).all()
        assert (summary[measure] <= summary[f"{measure}_high"]).all()
    assert list(summary.columns) == [f"{measure}{part}" for measure in ("auc", "steps_to_threshold", "final")
                                     for part in ("", "_low", "_high", "_se", "_mdd")] + ["seeds"]


def test_the_convergence_table_measures_are_iqms_over_runs_and_task_sets(table, summary):
    ra3 = table[table["init"] == "ra3"]
    last = ra3[ra3["step"] == STEPS[-1]]["value"]
    assert summary.loc["ra3", "final"] == pytest.approx(stats.iqm(last))
    areas = ra3.groupby(["seed", "task_set"])["value"].apply(lambda v: np.trapezoid(v, STEPS) / STEPS[-1])
    assert summary.loc["ra3", "auc"] == pytest.approx(stats.iqm(areas))
    # ra3's IQM curve is 0.8 (1 - exp(-step / 40)) + 0.02: it first reaches 0.5 at step 40
    assert summary.loc["ra3", "steps_to_threshold"] == 40
    assert summary.attrs["threshold"] == 0.5


def test_the_convergence_table_gives_each_measure_its_standard_error_and_minimum_detectable_difference(summary):
    z = norm.ppf(0.975)
    for measure in ("auc", "final"):
        se = (summary[f"{measure}_high"] - summary[f"{measure}_low"]) / (2 * z)
        assert np.allclose(summary[f"{measure}_se"], se) and (se > 0).all()
        assert np.allclose(summary[f"{measure}_mdd"], (z + norm.ppf(0.8)) * np.sqrt(2) * se)
    # ntp and ra3 reach 0.5 at the same step in every draw; base never does, so its se and MDD are undefined
    assert (summary.loc[["ntp", "ra3"], ["steps_to_threshold_se", "steps_to_threshold_mdd"]] == 0).all().all()
    assert summary.loc["base", ["steps_to_threshold_se", "steps_to_threshold_mdd"]].isna().all()
    assert summary.attrs["alpha"] == 0.05 and summary.attrs["power"] == 0.8


def spread_table(shifts, top=0.8) -> pd.DataFrame:
    """One init, one task set: pass rates top * (1 - exp(-step / 40)) + shifts[seed]."""
    return pd.DataFrame([{"init": "ra3", "seed": seed, "task_set": "mbpp", "step": step,
                          "value": top * (1 - np.exp(-step / 40)) + shift}
                         for seed, shift in enumerate(shifts) for step in STEPS])


def test_the_minimum_detectable_difference_shrinks_with_more_seeds_of_the_same_spread():
    shifts = [-0.04, -0.02, 0.0, 0.02, 0.04]
    tables = [convergence_table(spread_table(np.tile(shifts, copies)), threshold=0.4, reps=300).iloc[0]
              for copies in (1, 4, 16)]  # 5, 20 and 80 seeds spread alike
    for measure in ("auc", "final"):
        mdd = [row[f"{measure}_mdd"] for row in tables]
        assert mdd[0] > mdd[1] > mdd[2] > 0
    steps = [row["steps_to_threshold_mdd"] for row in tables]  # whole steps of 10: it drops to 0, not smoothly
    assert steps[0] > 0 and steps == sorted(steps, reverse=True) and steps[-1] == 0
    same = convergence_table(spread_table(np.zeros(6)), threshold=0.4, reps=300)
    assert (same.filter(regex="_(se|mdd)$") == 0).all().all() and same.filter(regex="_(se|mdd)$").shape == (1, 6)


def test_a_threshold_missed_in_some_draws_gives_an_infinite_minimum_detectable_difference():
    # the IQM curve ends near 0.5: some draws reach it and some do not, so the interval has no upper end
    row = convergence_table(spread_table([-0.04, -0.02, 0.0, 0.02, 0.04], top=0.52), threshold=0.5, reps=300).iloc[0]
    assert np.isfinite(row["steps_to_threshold_low"]) and row["steps_to_threshold_high"] == np.inf
    assert row["steps_to_threshold_se"] == row["steps_to_threshold_mdd"] == np.inf
    assert np.isfinite(row["final_mdd"]) and "∞" in to_markdown(convergence_table(
        spread_table([-0.04, 0.0, 0.04], top=0.52), threshold=0.5, reps=50)).splitlines()[2]


def test_probability_of_improvement_favours_the_better_init(table):
    point, low, high = stats.probability_of_improvement_ci(*run_scores(table, x="ra3", y="ntp"), reps=300)
    assert point == 1.0 and low > 0.5 and low <= point <= high
    assert stats.probability_of_improvement(*run_scores(table, x="ntp", y="ra3")) == 0.0
    close = curves_table({"ntp": 0.6, "ra3": 0.61})  # shifts of 0.01 per seed: ra3's runs overlap ntp's
    point, low, high = stats.probability_of_improvement_ci(*run_scores(close, measure="auc"), reps=300)
    assert 0.5 < point < 1 and low <= point <= high


def test_run_scores_are_each_runs_final_value_or_area_per_task_set(table):
    curves = np.array([[CEILING["ra3"] * (1 - np.exp(-STEPS / 40)) + 0.01 * seed + 0.02 * k for k in range(2)]
                       for seed in range(3)])   # [seeds, task sets (humaneval, mbpp), steps], as curves_table draws
    ra3, ntp = run_scores(table, x="ra3", y="ntp")
    assert np.allclose(ra3, curves[..., -1]) and ntp.shape == ra3.shape
    assert np.allclose(run_scores(table, measure="auc")[0], stats.area_under_curve(curves, STEPS))


def test_the_convergence_figure_has_a_panel_per_task_set_and_an_aggregate(table, tmp_path):
    fig = convergence_figure(table, "held-out pass@1", threshold=0.5, reps=100)
    assert [ax.get_title() for ax in fig.axes] == ["humaneval", "mbpp", "aggregate"]
    for ax in fig.axes:
        assert len(ax.lines) == 3 + 1 and len(ax.collections) == 3  # an IQM line and band per init, the threshold
        assert ax.lines[-1].get_linestyle() == "--" and set(ax.lines[-1].get_ydata()) == {0.5}
    first = table[(table["init"] == "ra3") & (table["task_set"] == "humaneval")]
    expected = first.groupby("step")["value"].apply(stats.iqm).to_numpy()
    ra3 = next(line for line in fig.axes[0].lines if line.get_label() == "RA3")
    assert np.allclose(ra3.get_ydata(), expected) and ra3.get_color() == color("ra3")
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["Base", "NTP", "RA3", "threshold 0.5"]
    pdf, png = save(fig, tmp_path / "figures", "convergence")
    assert pdf.read_bytes().startswith(b"%PDF") and mpimg.imread(png).ndim == 3
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["convergence.pdf", "convergence.png"]


def test_one_task_set_and_chosen_inits_give_one_panel(table):
    fig = convergence_figure(table[table["task_set"] == "mbpp"], "pass@1", inits=["ra3", "ntp"], reps=50)
    assert len(fig.axes) == 1 and [line.get_label() for line in fig.axes[0].lines] == ["RA3", "NTP"]


def test_latex_and_markdown_tables_carry_points_intervals_and_minimum_detectable_differences(summary):
    latex = to_latex(summary)
    assert latex.startswith(r"\begin{tabular}{lrrrrrrr}") and r"\toprule" in latex and r"\bottomrule" in latex
    assert r"steps to threshold & steps to threshold MDD" in latex and r"$\infty$" in latex
    ra3 = next(line for line in latex.splitlines() if line.startswith("RA3 &"))
    assert f"{summary.loc['ra3', 'final']:.3g} [" in ra3
    assert ra3.endswith(rf"& {summary.loc['ra3', 'final_mdd']:.3g} & 3 \\")
    assert latex.splitlines()[-1].startswith("% MDD: minimum detectable difference") and "power = 0.8" in latex
    markdown = to_markdown(summary).splitlines()
    assert len(markdown) == 2 + 3 + 2 and markdown[0] == (
        "| init | AUC | AUC MDD | steps to threshold | steps to threshold MDD | final | final MDD | seeds |")
    assert markdown[1] == "|:---|---:|---:|---:|---:|---:|---:|---:|" and markdown[2].startswith("| Base | ")
    base = markdown[2].split(" | ")
    assert base[3] == "∞ [∞, ∞]" and base[4] == "–" and base[2] == f"{summary.loc['base', 'auc_mdd']:.3g}"
    assert "_se" not in "".join(markdown) and markdown[-2] == "" and "alpha = 0.05, power = 0.8" in markdown[-1]
    assert to_latex(pd.DataFrame({"a_b": [1.5]}, index=["x%"])).splitlines()[2] == r" & a\_b \\"


def test_the_theory_figure_sets_measured_beside_predicted(tmp_path):
    items = [
        {"name": "pruning slope", "measured": -0.48, "low": -0.55, "high": -0.41,
         "predicted": {"K = |Z|": -0.5, "K = |Z_eps|": -0.3}, "ylabel": "slope"},
        {"name": "effective horizon", "x": [1, 2, 4, 8], "measured": [95, 51, 26, 13], "low": [90, 48, 24, 12],
         "high": [99, 54, 28, 14], "predicted": [100, 50.3, 25.4, 12.9], "xscale": "log", "yscale": "log"},
        {"name": "thought rate", "x": [0.01, 0.05, 0.2], "measured": [0.6, 0.38, 0.1], "predicted": 0.4},
    ]
    fig = theory_figure(items)
    assert [ax.get_title() for ax in fig.axes] == ["pruning slope", "effective horizon", "thought rate"]
    scalar, horizon, rate = fig.axes
    assert [t.get_text() for t in scalar.get_xticklabels()] == ["measured", "K = $|Z|$", r"K = $|Z_\epsilon|$"]
    assert scalar.containers[0].lines[0].get_ydata()[0] == -0.48
    assert [line.get_ydata()[0] for line in scalar.lines if line.get_marker() == "D"] == [-0.5, -0.3]
    predicted = next(line for line in horizon.lines if line.get_label() == "predicted")
    assert list(predicted.get_ydata()) == [100, 50.3, 25.4, 12.9] and horizon.get_xscale() == "log"
    assert [t.get_text() for t in horizon.get_xticklabels()] == ["1", "2", "4", "8"]
    assert [t.get_text() for t in horizon.get_legend().get_texts()] == ["measured", "predicted"]
    assert list(next(line for line in rate.lines if line.get_label() == "predicted").get_ydata()) == [0.4] * 3
    assert all(path.stat().st_size > 0 for path in save(fig, tmp_path, "theory"))


def test_arms_keep_their_colours_and_order():
    assert len({color(arm) for arm in ("base", "ntp", "ra3", "oracle", "random")}) == 5
    assert color("RA3") == color("ra3") == ARMS["ra3"][1] and label("ra3") == "RA3"
    assert color("my-arm") == color("my-arm") and label("my-arm") == "my-arm"
    assert order(["zeta", "ra3", "random", "base", "ra3"]) == ["base", "ra3", "random", "zeta"]


@pytest.mark.parametrize("column", ["init", "seed", "task_set", "step", "value"])
def test_a_missing_column_is_named(table, column):
    with pytest.raises(ConfigError) as error:
        convergence_table(table.drop(columns=column), threshold=0.5)
    assert error.value.field == column


def test_bad_tables_and_names_are_config_errors(table):
    def field(function, *args, **kwargs):
        with pytest.raises(ConfigError) as error:
            function(*args, **kwargs)
        return error.value.field

    assert field(convergence_figure, table.iloc[:0], "pass@1") == "table"
    assert field(convergence_figure, table, "pass@1", inits=["ra3", "oracle"]) == "inits"
    assert field(run_scores, table, x="teacher") == "x"
    assert field(run_scores, table, y="bolt") == "y"
    assert field(run_scores, table, measure="median") == "measure"
    assert field(convergence_table, table.drop(index=5), threshold=0.5) == "value"  # a seed lacks one step
    assert field(convergence_table, pd.concat([table, table.iloc[:1]]), threshold=0.5) == "step"
    assert field(convergence_table, table.assign(value=table["value"].where(table.index != 3)), 0.5) == "value"
    assert field(convergence_table, table, threshold=50) == "threshold"
    assert field(convergence_table, table, threshold=0.5, alpha=1.5) == "alpha"
    assert field(convergence_table, table, threshold=0.5, power=0.0) == "power"
    assert field(theory_figure, []) == "items"
    assert field(theory_figure, [{"name": "a", "measured": 1.0}]) == "items[0].predicted"
    assert field(theory_figure, [{"name": "a", "measured": 1.0, "predicted": 1, "colour": "red"}]) == "items[0].colour"
    assert field(theory_figure, [{"name": "a", "measured": [1, 2], "predicted": [1, 2, 3]}]) == "items[0].predicted"
