"""Convergence tables from a long table of RL curves, rendered for the paper (LaTeX) and for reading (Markdown).

The long table has one row per point of a curve: columns ``init`` (the mid-training arm: base, ntp, ra3, ...),
``seed``, ``task_set``, ``step`` and ``value`` (a pass rate in [0, 1], e.g. held-out pass@1). A run is one
(init, seed); every init needs a value at each of its seeds x every task set x each of its steps. Intervals
are stratified bootstraps over seeds within each task set (:mod:`ra3lab.stats`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ra3lab import stats
from ra3lab.errors import check, check_choice
from ra3lab.plots.style import label, order

COLUMNS = ("init", "seed", "task_set", "step", "value")
MEASURES = {"auc": "AUC", "steps_to_threshold": "steps to threshold", "final": "final"}
NEVER = 1e300  # stands for "never reached" inside the bootstrap, whose percentiles cannot interpolate inf


def require_columns(table, columns, name: str = "table") -> None:
    """ConfigError unless ``table`` is a non-empty DataFrame with ``columns``; a missing column is the field."""
    check(isinstance(table, pd.DataFrame), name, type(table).__name__, "must be a pandas DataFrame")
    for column in columns:
        check(column in table.columns, column, "(missing column)",
              f"{name} needs columns {', '.join(columns)}; it has {', '.join(map(str, table.columns))}")
    check(len(table) > 0, name, "(empty)", "needs at least one row")


def check_curves(table) -> pd.DataFrame:
    """``table`` checked to be a long table of curves (see the module docstring)."""
    require_columns(table, COLUMNS)
    for column in ("step", "value"):
        check(pd.api.types.is_numeric_dtype(table[column]), column, str(table[column].dtype), "must be numeric")
    check(bool(np.isfinite(table["value"]).all()), "value", "(nan or inf)", "every value must be a finite number")
    duplicated = table.duplicated(["init", "seed", "task_set", "step"])
    check(not duplicated.any(), "step", table.loc[duplicated, "step"].iloc[0] if duplicated.any() else None,
          "each (init, seed, task_set, step) must have one row")
    return table


def pick_inits(table: pd.DataFrame, chosen=None, field: str = "inits") -> list[str]:
    """The inits to show: ``chosen`` (each one checked to be in the table) or all of them, in style order."""
    present = order(table["init"].unique())
    if chosen is None:
        return present
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    for init in chosen:
        check_choice(field, init, present)
    return chosen


def task_sets(table: pd.DataFrame) -> list:
    return sorted(table["task_set"].unique(), key=str)


def curve_array(table: pd.DataFrame, init: str):
    """(steps ndarray[steps], curves ndarray[seeds, task_sets, steps]) of one init; task sets in the order of
    :func:`task_sets`. A missing (seed, task_set, step) of that init is a ConfigError."""
    rows = table[table["init"] == init]
    seeds, steps = sorted(rows["seed"].unique()), np.sort(rows["step"].unique())
    grid = pd.MultiIndex.from_product([seeds, task_sets(table), steps], names=["seed", "task_set", "step"])
    values = rows.set_index(["seed", "task_set", "step"])["value"].reindex(grid)
    missing = values.index[values.isna()]
    check(len(missing) == 0, "value", f"(missing for init={init} at (seed, task_set, step) = {missing[:1].tolist()})",
          "every init needs a value at each of its seeds x every task set x each of its steps")
    return steps.astype(float), values.to_numpy(float).reshape(len(seeds), -1, len(steps))


def convergence_table(table: pd.DataFrame, threshold: float, reps: int = 2000, rng: stats.Rng = 0,
                      confidence: float = 0.95, inits=None, alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """One row per init (index ``init``): ``auc``, ``steps_to_threshold`` and ``final``, each with
    ``<measure>_low``/``_high`` of a ``confidence`` stratified-bootstrap interval, ``<measure>_se`` and
    ``<measure>_mdd``, and ``seeds``.

    auc: IQM over runs x task sets of the area under each curve divided by its step range (its mean level).
    final: IQM over runs x task sets of the value at the last step.
    steps_to_threshold: the first step at which the IQM curve (IQM over runs x task sets at each step) is at
    least ``threshold``; inf when it never is (a ``_high`` of inf: the threshold is missed in some draws).
    ``<measure>_se``: the bootstrap standard error, from the interval's width (:func:`stats.interval_se`:
    (high - low) / (2 z_{(1 + confidence) / 2})), not from the draws, whose "never reached" cannot enter a
    standard deviation. ``<measure>_mdd``: the minimum detectable difference between this init and one with the
    same standard error (:func:`stats.minimum_detectable_difference`, two-sided level ``alpha``, ``power``): two
    inits closer than it are not shown to be alike, only not told apart. Both are in the measure's units; for
    steps_to_threshold they are inf when only ``_high`` is inf and nan when ``_low`` is inf too.
    ``inits``: the arms to tabulate, in this order (all of them, in style order, by default).
    """
    check_curves(table)
    stats.minimum_detectable_difference(0.0, 0.0, alpha, power)  # a bad alpha or power fails before the bootstrap
    rng = np.random.default_rng(rng)
    rows = {}
    for init in pick_inits(table, inits):
        steps, curves = curve_array(table, init)

        def statistic(curves, steps=steps):
            reach = stats.steps_to_threshold(stats.iqm(curves.reshape(-1, len(steps)), axis=0), steps, threshold)
            return np.array([stats.iqm(stats.area_under_curve(curves, steps)), min(reach, NEVER),
                             stats.iqm(curves[..., -1])])

        interval = stats.stratified_bootstrap_ci(curves, statistic, reps, confidence, rng)
        point, low, high = (np.array(v) for v in interval)
        for values in (point, low, high):
            values[1] = np.inf if values[1] > steps[-1] else values[1]
        se = stats.interval_se(low, high, confidence)
        mdd = stats.minimum_detectable_difference(se, se, alpha, power)
        rows[init] = {key: value for i, measure in enumerate(MEASURES) for key, value in
                      ((measure, point[i]), (f"{measure}_low", low[i]), (f"{measure}_high", high[i]),
                       (f"{measure}_se", se[i]), (f"{measure}_mdd", mdd[i]))}
        rows[init]["seeds"] = len(curves)
    result = pd.DataFrame.from_dict(rows, orient="index")
    result.index.name = "init"
    result.attrs.update(threshold=threshold, alpha=alpha, power=power)
    return result


def run_scores(table: pd.DataFrame, x: str = "ra3", y: str = "ntp",
               measure: str = "final") -> tuple[np.ndarray, np.ndarray]:
    """(ndarray[seeds of x, task_sets], ndarray[seeds of y, task_sets]): the score of each run of init ``x`` and
    of init ``y`` on each task set, its ``final`` value or its ``auc`` (in the values' units), task sets in the
    order of :func:`task_sets`. The x and y of :func:`ra3lab.stats.probability_of_improvement_ci`."""
    check_curves(table)
    check_choice("measure", measure, ("final", "auc"))

    def scores(field: str, init: str) -> np.ndarray:
        steps, curves = curve_array(table, pick_inits(table, init, field)[0])
        return curves[..., -1] if measure == "final" else stats.area_under_curve(curves, steps)

    return scores("x", x), scores("y", y)


def to_latex(df: pd.DataFrame, digits: int = 3) -> str:
    """A booktabs ``tabular`` of ``df``: a row per index entry (arms by their display names), a column per
    measure, written "point [low, high]" where ``<measure>_low``/``_high`` columns exist, followed by a column
    "<measure> MDD" where ``<measure>_mdd`` exists (``<measure>_se`` is not shown). A ``%`` comment after the
    table says what MDD means when ``df.attrs`` holds its ``alpha`` and ``power`` (:func:`convergence_table`)."""
    header, rows = _cells(df, digits, r"$\infty$")
    lines = [rf"\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", r"\toprule",
             " & ".join(map(_escape, header)) + r" \\", r"\midrule"]
    lines += [" & ".join([_escape(row[0]), *row[1:]]) + r" \\" for row in rows]
    note = _note(df)
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", *([f"% {note}"] if note else [])]) + "\n"


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """``df`` as a Markdown pipe table, cells as in :func:`to_latex`; the note on MDD follows as a paragraph."""
    header, rows = _cells(df, digits, "∞")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    note = _note(df)
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows] + (["", note] if note else [])) + "\n"


def _note(df: pd.DataFrame) -> str | None:
    """What the MDD columns mean, when ``df`` has one and its attrs hold the test's ``alpha`` and ``power``."""
    if not ({"alpha", "power"} <= set(df.attrs) and any(str(c).endswith("_mdd") for c in df.columns)):
        return None
    return (f"MDD: minimum detectable difference against an init with the same standard error (two-sided "
            f"alpha = {df.attrs['alpha']:g}, power = {df.attrs['power']:g}); inits closer than it are not told apart.")


def _cells(df: pd.DataFrame, digits: int, infinity: str) -> tuple[list[str], list[list[str]]]:
    check(isinstance(df, pd.DataFrame) and len(df) > 0, "df", type(df).__name__, "must be a non-empty DataFrame")
    folded = {f"{c}_{part}" for c in df.columns for part in ("low", "high", "se", "mdd")}
    shown = [c for c in df.columns if c not in folded or c.rsplit("_", 1)[0] not in df.columns]

    def number(value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, np.integer)):
            return str(value)
        if math.isnan(value):
            return "–"
        return infinity if math.isinf(value) else f"{value:.{digits}g}"

    header, rows = [str(df.index.name or "")], []
    for column in shown:
        header.append(MEASURES.get(column, str(column)))
        if f"{column}_mdd" in df.columns:
            header.append(f"{header[-1]} MDD")
    for i, name in enumerate(df.index):
        cells = [label(name)]
        for column in shown:
            cell = number(df[column].iloc[i])
            if f"{column}_low" in df.columns and f"{column}_high" in df.columns:
                cell += f" [{number(df[f'{column}_low'].iloc[i])}, {number(df[f'{column}_high'].iloc[i])}]"
            cells.append(cell)
            if f"{column}_mdd" in df.columns:
                cells.append(number(df[f"{column}_mdd"].iloc[i]))
        rows.append(cells)
    return header, rows


def _escape(text: str) -> str:
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
               "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(char, char) for char in str(text))
