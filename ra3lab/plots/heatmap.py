"""A metric over two swept keys (e.g. abstraction budget x thought penalty) from a sweep's aggregate table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ra3lab import stats
from ra3lab.errors import check, check_choice
from ra3lab.plots.style import COLUMN, figure
from ra3lab.plots.tables import require_columns

REDUCERS: dict[str, Callable[[np.ndarray], float]] = {"mean": np.mean, "median": np.median, "iqm": stats.iqm}


def sweep_surface(aggregate: pd.DataFrame, x: str, y: str, value: str, reduce: str = "mean") -> pd.DataFrame:
    """DataFrame[y values (sorted), x values (sorted)]: ``reduce`` of ``value`` over the runs of each (x, y).

    Every run with the same (x, y) falls in one cell, so seeds and any other swept key are reduced over
    (filter ``aggregate`` first to hold one fixed). Runs without the value (pending, failed) are left out; a
    cell none of whose runs has it is nan.
    """
    require_columns(aggregate, (x, y, value), "aggregate")
    check_choice("reduce", reduce, tuple(REDUCERS))
    values = pd.to_numeric(aggregate[value], errors="coerce")
    check(bool(values.notna().any()), value, "(no numeric value)", "needs a number in at least one run (a done run)")
    frame = aggregate.assign(**{value: values})
    surface = (frame.dropna(subset=[value]).groupby([y, x])[value]
               .agg(lambda cell: REDUCERS[reduce](cell.to_numpy(float))).unstack(x))
    return surface.reindex(index=sorted(aggregate[y].dropna().unique()), columns=sorted(aggregate[x].dropna().unique()))


def sweep_heatmap(aggregate: pd.DataFrame, x: str, y: str, value: str, reduce: str = "mean", fmt: str = "{:.3g}",
                  cmap: str | None = None, width: float = COLUMN, height: float = 2.6):
    """The heatmap of :func:`sweep_surface`: ``x`` across, ``y`` up, each cell annotated with ``fmt``
    ("–" where empty), and a colourbar of ``value``."""
    surface = sweep_surface(aggregate, x, y, value, reduce)
    fig, (ax,) = figure(1, width, height)
    cells = np.ma.masked_invalid(surface.to_numpy(float))
    image = ax.imshow(cells, origin="lower", aspect="auto", cmap=cmap)
    for (row, column), cell in np.ndenumerate(cells.filled(np.nan)):
        red, green, blue, _ = image.cmap(image.norm(cell))
        ink = "0.5" if np.isnan(cell) else "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        ax.text(column, row, "–" if np.isnan(cell) else fmt.format(cell), ha="center", va="center", fontsize=6,
                color=ink)
    ax.set_xticks(range(surface.shape[1]), [_tick(v) for v in surface.columns])
    ax.set_yticks(range(surface.shape[0]), [_tick(v) for v in surface.index])
    ax.set(xlabel=x, ylabel=y)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=f"{value} ({reduce} over runs)")
    return fig


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, int | float | np.number) and not isinstance(value, bool) else str(value)
