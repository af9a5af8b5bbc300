"""A measure over two swept keys of a sweep (e.g. RA3's penalty c x thought length L_z), with seed intervals.

A sweep's runs (:func:`sweep_runs`) are its aggregate table (:mod:`ra3lab.sweep.aggregate`: the swept keys, then
``run_id``, ``state`` and each summary's scalars) plus three measures of each run's held-out pass@1 curve (its
summary's ``curve_steps`` and ``curve``): ``auc``, the area under it over its step range
(:func:`ra3lab.stats.area_under_curve`, as in the convergence tables), ``final``, its last value, and, given a
threshold T, ``steps_to_threshold``, the first evaluated GRPO step with pass@1 >= T (inf when never reached).

Every swept key other than the two axes is a replicate (seeds): a cell holds the IQM (by default; or the mean or
median) of its runs' values with a 95% stratified-bootstrap interval (:func:`ra3lab.stats.stratified_bootstrap_ci`),
written in the cell as ``0.42 [0.31, 0.50]``, one number of decimals for the whole figure; a steps_to_threshold
that is never reached reads "never".

An ``arm`` axis shows each RA3 arm by its penalty c (``ra3_c0.05`` -> 0.05), in increasing c; the other arms
(ntp, teacher, ...) follow as reference columns (rows when ``arm`` is y) under their display names, set off from
the RA3 arms by a white line. Axes and colour bar are named in words (:data:`WORDS`), a key without words by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter

from ra3lab import stats
from ra3lab.errors import check, check_choice
from ra3lab.plots.style import COLUMN, FULL, RC, figure, label, order
from ra3lab.plots.tables import NEVER
from ra3lab.ra3.arms import penalty, ra3_by_penalty
from ra3lab.sweep.aggregate import load_aggregate
from ra3lab.sweep.status import read_manifest, run_path

ARM = "arm"
CURVE_MEASURES = ("auc", "final", "steps_to_threshold")
CELL_COLUMNS = ("value", "low", "high", "n")
WORDS = {
    ARM: "penalty per thought c",
    "estep.max_thought_tokens": "thought length L_z (tokens)",
    "rlvr.seed": "RLVR seed",
    "auc": "RLVR AUC (held-out pass@1)",
    "final": "final held-out pass@1",
    "steps_to_threshold": "GRPO steps to pass@1 >= {threshold}",
}
REDUCERS: dict[str, Callable[[np.ndarray], float]] = {"iqm": stats.iqm, "mean": np.mean, "median": np.median}
REDUCER_NAMES = {"iqm": "IQM", "mean": "mean", "median": "median"}


def words(key: str, threshold: float | None = None) -> str:
    """What ``key`` (a swept key or a value) means, for an axis: :data:`WORDS`, else the key itself."""
    return WORDS[key].format(threshold="T" if threshold is None else f"{threshold:g}") if key in WORDS else key


def sweep_runs(sweep_dir: str | Path, threshold: float | None = None) -> pd.DataFrame:
    """One row per run of the sweep in ``sweep_dir``: its aggregate table with the curve measures ``auc``,
    ``final`` and (given ``threshold``, a pass@1 in [0, 1]) ``steps_to_threshold`` of each run whose
    summary.json has ``curve_steps`` and ``curve`` (nan for the others; a summary scalar of the same name gives way).
    """
    sweep_dir = Path(sweep_dir)
    runs = load_aggregate(sweep_dir)
    if not (sweep_dir / "manifest.jsonl").exists():
        return runs
    measures = pd.DataFrame([_curve_measures(run_path(sweep_dir, entry) / "summary.json", threshold)
                             for entry in read_manifest(sweep_dir)], index=runs.index)
    return runs.assign(**{column: measures[column] for column in measures.columns})


def _curve_measures(summary_path: Path, threshold: float | None) -> dict[str, float]:
    """{auc, final[, steps_to_threshold]} of the held-out pass@1 curve in ``summary_path``; {} without one."""
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if "curve" not in summary or "curve_steps" not in summary:
        return {}
    curve, steps = summary["curve"], summary["curve_steps"]
    measures = {"auc": float(stats.area_under_curve(curve, steps)), "final": float(curve[-1])}
    if threshold is not None:
        measures["steps_to_threshold"] = float(stats.steps_to_threshold(curve, steps, threshold))
    return measures


def heatmap_cells(runs: pd.DataFrame, x: str, y: str, value: str, reduce: str = "iqm", reps: int = 2000,
                  confidence: float = 0.95, rng: int = 0) -> pd.DataFrame:
    """The cells of the (``x``, ``y``) grid, one row each (y slowest, both in drawing order): columns named
    ``x`` and ``y`` (the keys' values), ``value`` (the ``reduce`` of the cell's runs' ``value``), ``low`` and
    ``high`` (its ``confidence`` stratified-bootstrap interval over those runs, seed ``rng`` in every cell) and
    ``n`` (runs with a value).

    inf where steps_to_threshold is never reached (inside the bootstrap a never-reached run counts as later than
    any step); nan and n = 0 where no run has a value. attrs: value, reduce, confidence and replicates (the
    other swept keys, which each cell pools).
    """
    swept = _swept(runs)
    for field, key in (("x", x), ("y", y)):
        check(key in runs.columns, field, key, f"no run has it; the sweep's swept keys: {', '.join(swept)}")
    check(x != y, "y", y, "must differ from x")
    numbers = pd.to_numeric(runs[value], errors="coerce") if value in runs.columns else pd.Series(dtype=float)
    check(bool(numbers.notna().any()), "value", value, _values_hint(runs, swept, value))
    check_choice("reduce", reduce, tuple(REDUCERS))
    xs, ys = _axis(runs, "x", x), _axis(runs, "y", y)
    known = pd.DataFrame({"x": runs[x], "y": runs[y], "value": numbers}).dropna(subset=["value"])
    groups = {key: cell.to_numpy(float) for key, cell in known.groupby(["x", "y"])["value"]}
    rows = [{x: vx, y: vy, **_cell(groups.get((vx, vy), np.empty(0)), REDUCERS[reduce], reps, confidence, rng)}
            for vy in ys for vx in xs]
    cells = pd.DataFrame(rows, columns=[x, y, *CELL_COLUMNS])
    cells.attrs.update(value=value, reduce=reduce, confidence=confidence,
                       replicates=[key for key in swept if key not in (x, y)])
    return cells


def _swept(runs: pd.DataFrame) -> list[str]:
    """The swept keys of an aggregate table: its columns before ``run_id`` (or ``state``), else all of them."""
    columns = list(runs.columns)
    end = next((columns.index(name) for name in ("run_id", "state") if name in columns), len(columns))
    return columns[:end]


def _values_hint(runs: pd.DataFrame, swept: list[str], value: str) -> str:
    """Why no run has a number for ``value``, and the values that some run has."""
    numeric = [column for column in runs.columns if column not in (*swept, "run_id", "state")
               and pd.to_numeric(runs[column], errors="coerce").notna().any()]
    curves = ("auc, final and steps_to_threshold are measured on the curve_steps and curve of each run's "
              "summary.json (steps_to_threshold given threshold=T); ")
    return (f"no run has a number for it (no run done yet?); {curves if value in CURVE_MEASURES else ''}"
            f"values some run has: {', '.join(map(str, numeric)) or 'none'}")


def _axis(runs: pd.DataFrame, field: str, key: str) -> list:
    """The values of ``key`` in drawing order (see the module docstring); at least two of them."""
    present = list(runs[key].dropna().unique())
    check(len(present) >= 2, field, key, f"has {len(present)} value(s) ({', '.join(map(str, present))}): sweep "
          f"{key} over 2 or more values (grid: {key}=a,b,...) for a heatmap")
    if key != ARM:
        return sorted(present)
    ra3 = [name for _, name in ra3_by_penalty({str(name): name for name in present})]
    return ra3 + order(name for name in present if penalty(str(name)) is None)


def _cell(values: np.ndarray, statistic: Callable, reps: int, confidence: float, rng: int) -> dict:
    """{value, low, high, n} of one cell's run values ndarray[runs] (inf: never reached)."""
    if not len(values):
        return {"value": np.nan, "low": np.nan, "high": np.nan, "n": 0}
    capped = np.minimum(values, NEVER)  # percentiles cannot interpolate inf
    interval = np.array(stats.stratified_bootstrap_ci(capped, statistic, reps, confidence, rng))
    if np.isinf(values).any():  # anything beyond the last step reached carries a never-reached run
        interval[interval > capped[capped < NEVER].max(initial=-np.inf)] = np.inf
    return {"value": interval[0], "low": interval[1], "high": interval[2], "n": len(values)}


def sweep_heatmap(cells: pd.DataFrame, threshold: float | None = None, decimals: int | None = None,
                  cmap: str | None = None, height: float = 2.6):
    """The heatmap of :func:`heatmap_cells`: x across, y up, each cell written ``value [low, high]`` with
    ``decimals`` decimals (by default from the numbers shown), "never" for a steps_to_threshold never
    reached and "–" where empty; a colour bar of the value (reversed colours for steps, so that bright is good
    throughout). The figure is as wide as its columns need, from one paper column to the full width."""
    (x, y), value = map(str, cells.columns[:2]), cells.attrs["value"]
    xs, ys = list(dict.fromkeys(cells[x])), list(dict.fromkeys(cells[y]))
    fmt = f"%.{_decimals(cells) if decimals is None else decimals}f"
    fig, (ax,) = figure(1, float(np.clip(1.4 + 1.1 * len(xs), COLUMN, FULL)), height)
    grid = np.ma.masked_invalid(cells["value"].to_numpy(float).reshape(len(ys), len(xs)))
    cmap = cmap or (f"{RC['image.cmap']}_r" if value == "steps_to_threshold" else None)
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap=cmap)
    for i, row in enumerate(cells.itertuples(index=False)):
        point = row[2]
        red, green, blue, _ = image.cmap(image.norm(point))
        bright = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ink = "0.35" if not np.isfinite(point) else "black" if bright else "white"
        ax.text(i % len(xs), i // len(xs), _cell_text(row[2:5], fmt), ha="center", va="center", fontsize=7,
                color=ink)
    ax.set_xticks(range(len(xs)), [_tick(x, v) for v in xs])
    ax.set_yticks(range(len(ys)), [_tick(y, v) for v in ys])
    for key, values, line in ((x, xs, ax.axvline), (y, ys, ax.axhline)):
        split = sum(penalty(str(v)) is not None for v in values) if key == ARM else 0
        if 0 < split < len(values):
            line(split - 0.5, color="white", linewidth=3)
    ax.set(xlabel=words(x), ylabel=words(y))
    ax.grid(False)
    ax.set_facecolor("0.92")  # behind empty and never-reached cells
    fig.colorbar(image, ax=ax, label=_value_label(cells, threshold), format=FormatStrFormatter(fmt))
    return fig


def _decimals(cells: pd.DataFrame) -> int:
    """Decimals for every number of the figure: two significant digits of its typical (median nonzero) number."""
    numbers = np.abs(cells[["value", "low", "high"]].to_numpy(float))
    numbers = numbers[np.isfinite(numbers) & (numbers > 0)]
    return 2 if not len(numbers) else int(np.clip(1 - np.floor(np.log10(np.median(numbers))), 0, 4))


def _cell_text(interval, fmt: str) -> str:
    """``point [low, high]`` of one cell, "never" for an inf, "–" for an empty cell."""
    point, low, high = interval
    if np.isnan(point):
        return "–"
    if np.isinf(point) and np.isinf(low):
        return "never"
    return f"{_number(point, fmt)} [{_number(low, fmt)}, {_number(high, fmt)}]"


def _number(value: float, fmt: str) -> str:
    return "never" if np.isinf(value) else fmt % value


def _value_label(cells: pd.DataFrame, threshold: float | None) -> str:
    """The colour bar's name: the value in words, then the statistic and what it pools."""
    attrs = cells.attrs
    pooled = ", ".join(words(key) for key in attrs["replicates"]) or "runs"
    return (f"{words(attrs['value'], threshold)}\n{REDUCER_NAMES[attrs['reduce']]} over {pooled} "
            f"[{attrs['confidence']:.0%} CI]")


def _tick(key: str, value) -> str:
    """A tick label: an RA3 arm's c, another arm's display name, a number by ``:g``, anything else as it is."""
    if key == ARM:
        c = penalty(str(value))
        return label(value) if c is None else f"{c:g}"
    return f"{value:g}" if isinstance(value, int | float | np.number) and not isinstance(value, bool) else str(value)
