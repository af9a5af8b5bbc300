"""Convergence curves of RL post-training: a panel per task set and one aggregating all of them, each arm's
IQM (or another statistic) across seeds with stratified-bootstrap bands."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ra3lab import stats
from ra3lab.plots.style import FULL, color, figure, label
from ra3lab.plots.tables import check_curves, curve_array, pick_inits, task_sets


def convergence_figure(table: pd.DataFrame, metric: str, threshold: float | None = None, inits=None,
                       statistic: Callable = stats.iqm, reps: int = 2000, confidence: float = 0.95,
                       rng: stats.Rng = 0, xlabel: str = "RL step", width: float = FULL, height: float = 2.0):
    """The figure of the long table of curves ``table`` (see :mod:`ra3lab.plots.tables`), ``metric`` naming its
    values (e.g. "held-out pass@1").

    One panel per task set (the seeds of each arm), then, when there are several task sets, an "aggregate"
    panel (seeds x task sets, resampled within each task set). Each arm of ``inits`` (all, in style order, by
    default) is a line of ``statistic`` at each step with a ``confidence`` band; ``threshold`` adds a dashed line.
    """
    check_curves(table)
    arms, sets = pick_inits(table, inits), task_sets(table)
    panels = [(str(name), [k]) for k, name in enumerate(sets)]
    panels += [("aggregate", list(range(len(sets))))] if len(sets) > 1 else []
    fig, axes = figure(len(panels), width, height)
    rng = np.random.default_rng(rng)
    for arm in arms:
        steps, curves = curve_array(table, arm)
        for ax, (_, columns) in zip(axes, panels):
            point, low, high = stats.curve_bands(curves[:, columns], statistic, reps, confidence, rng)
            ax.fill_between(steps, low, high, color=color(arm), alpha=0.2, linewidth=0)
            ax.plot(steps, point, color=color(arm), label=label(arm))
    name = {"iqm": "IQM", "mean": "mean", "median": "median"}.get(statistic.__name__, statistic.__name__)
    for ax, (title, _) in zip(axes, panels):
        if threshold is not None:
            ax.axhline(threshold, color="0.35", linestyle="--", linewidth=0.8, label=f"threshold {threshold:g}")
        ax.set(title=title, xlabel=xlabel)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(f"{metric} ({name})")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(handles))
    return fig
