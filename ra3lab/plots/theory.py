"""Theory next to practice: one panel type that sets a measured quantity, with its interval, beside what a
theorem predicts for it (thought rate against the penalty c, effective horizon 1/(1 - gamma_bar), pruning
slopes against the K = |Z| and K = |Z_eps| forms, ...)."""

from __future__ import annotations

import numpy as np

from ra3lab.errors import ConfigError, check
from ra3lab.plots.style import FULL, OTHER, color, figure, plain_log, typeset

KEYS = ("name", "measured", "predicted", "low", "high", "x", "categories", "xlabel", "ylabel", "xscale", "yscale")


def theory_figure(items: list[dict], ncols: int | None = None, width: float = FULL, height: float = 2.0):
    """A panel per item (grid of ``ncols`` a row, at most 4 by default), drawn by :func:`theory_panel`."""
    check(isinstance(items, list | tuple) and len(items) > 0, "items", items, "need a list of at least one item")
    fig, axes = figure(len(items), width, height, ncols)
    for index, (ax, item) in enumerate(zip(axes, items)):
        theory_panel(ax, item, f"items[{index}]")
    return fig


def theory_panel(ax, item: dict, field: str = "item") -> None:
    """Draw ``item`` on ``ax``. Keys: ``name`` (the title), ``measured`` (a float or values[n]), ``predicted``
    (the same, or {form: such values} for several forms of a prediction), optionally ``low``/``high`` (the
    interval of ``measured``, same shape), ``x`` (values[n]) or ``categories`` (names[n], e.g. arms), ``xlabel``,
    ``ylabel``, ``xscale``/``yscale``.

    A single measured value without ``x`` is a dot with its interval beside each predicted value (a hollow
    diamond, with a dotted level across); with ``categories``, a dot with its interval per category and a hollow
    diamond per prediction; otherwise measured is a line with error bars, each prediction dashed.
    """
    check(isinstance(item, dict), field, item, "must be a dict with name, measured, predicted")
    for key, value in item.items():
        check(key in KEYS, f"{field}.{key}", value, f"is not a key of an item: use {', '.join(KEYS)}")
    for key in ("name", "measured", "predicted"):
        check(key in item, f"{field}.{key}", "(missing)", "every item needs name, measured and predicted")
    check(("low" in item) == ("high" in item), f"{field}.low", item.get("low"), "give low and high together")
    measured = _values(item["measured"], f"{field}.measured")
    n = len(measured)
    predicted = item["predicted"] if isinstance(item["predicted"], dict) else {"predicted": item["predicted"]}
    check(len(predicted) > 0, f"{field}.predicted", predicted, "needs at least one prediction")
    predicted = {form: _values(values, f"{field}.predicted", n, scalar=True) for form, values in predicted.items()}
    tints = (color("predicted"), *OTHER)
    tint = {form: tints[i % len(tints)] for i, form in enumerate(predicted)}
    ax.set(xscale=item.get("xscale", "linear"), yscale=item.get("yscale", "linear"))  # before ticks: it resets them
    error = None
    if "low" in item:
        low, high = (_values(item[key], f"{field}.{key}", n) for key in ("low", "high"))
        error = np.abs(np.stack([measured - low, high - measured]))
    if "categories" in item:
        names = list(item["categories"])
        check(len(names) == n, f"{field}.categories", names, f"need one name per measured value ({n})")
        ax.errorbar(np.arange(n), measured, yerr=error, fmt="o", color=color("measured"), capsize=3, label="measured")
        for form, values in predicted.items():
            ax.plot(np.arange(n), np.broadcast_to(values, (n,)), "D", mfc="none", color=tint[form],
                    label=typeset(form))
        ax.set_xticks(range(n), names, rotation=20, ha="right")
        ax.set_xlim(-0.6, n - 0.4)
        ax.grid(False, axis="x")
        ax.legend()
    elif n == 1 and "x" not in item:
        ax.errorbar([0], measured, yerr=error, fmt="o", color=color("measured"), capsize=3)
        for position, (form, values) in enumerate(predicted.items(), 1):
            ax.axhline(values[0], color=tint[form], linestyle=":", linewidth=0.8)
            ax.plot([position], values, "D", mfc="none", color=tint[form])
        ax.set_xticks(range(len(predicted) + 1), ["measured", *map(typeset, predicted)], rotation=20, ha="right")
        ax.set_xlim(-0.6, len(predicted) + 0.6)
        ax.grid(False, axis="x")
    else:
        x = _values(item.get("x", np.arange(n)), f"{field}.x", n)
        ax.errorbar(x, measured, yerr=error, fmt="o-", color=color("measured"), capsize=2, label="measured")
        for form, values in predicted.items():
            ax.plot(x, np.broadcast_to(values, x.shape), "--", color=tint[form], label=typeset(form))
        handles, labels = ax.get_legend_handles_labels()   # the errorbar container comes last: put it first
        ax.legend(handles[-1:] + handles[:-1], labels[-1:] + labels[:-1])
        if item.get("xscale") == "log":
            ax.set_xticks(x, [f"{v:g}" for v in x])
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            plain_log(axis)
    ax.set(title=typeset(item["name"]), xlabel=typeset(item.get("xlabel", "")), ylabel=typeset(item.get("ylabel", "")))


def _values(values, field: str, n: int | None = None, scalar: bool = False) -> np.ndarray:
    """``values`` as a float array[k] with k = n (or 1 when ``scalar``), checked."""
    try:
        array = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        array = None
    sizes = (n, 1) if scalar else (n,)
    if array is None or not (array.ndim == 1 and len(array) > 0 and (n is None or len(array) in sizes)):
        raise ConfigError(field, values,
                          "must be a number or a flat list of numbers" + (f" of length {n}" if n is not None else ""))
    return array
