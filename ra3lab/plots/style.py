"""The one figure style of every command: sizes readable at column width, one fixed colour and label per arm,
plain log ticks, deterministic atomic saving.

Every figure starts with :func:`figure`, which applies :data:`RC` to matplotlib's rcParams (nothing is set at
import), and ends with :func:`save`, whose files depend only on what was drawn: the same figure gives the same
bytes whichever command draws it. Widths are in inches: :data:`COLUMN` for one column of a two-column paper,
:data:`FULL` for the whole text width.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FormatStrFormatter, LogLocator, NullLocator

from ra3lab.ra3.arms import penalty

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

COLUMN, FULL = 3.3, 6.8

RC: dict[RcKeyType, Any] = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.3, "lines.markersize": 4,
    "axes.linewidth": 0.6, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 300, "image.cmap": "viridis",
}
FORMATS = {"pdf": {"CreationDate": None}, "png": {}}    # suffix -> savefig metadata: no date in the PDF

# Okabe-Ito colours (colour-blind safe); the order of ARMS is the order of legends and tables.
ARMS = {
    "base": ("Base", "#7F7F7F"),
    "ntp": ("NTP", "#0072B2"),
    "ra3": ("RA3", "#D55E00"),
    "teacher": ("Teacher + NTP", "#E69F00"),
    "bolt": ("BoLT", "#56B4E9"),
    "oracle": ("Oracle", "#009E73"),
    "random": ("Random", "#CC79A7"),
    "dsl": ("Skill DSL", "#882255"),
    "measured": ("measured", "#222222"),
    "predicted": ("predicted", "#0072B2"),
}
OTHER = ("#8C564B", "#17BECF", "#BCBD22", "#9467BD", "#2CA02C", "#E377C2", "#1F77B4", "#D62728", "#FF7F0E", "#393B79")


def _arm(name) -> str:
    """The arm family of a name: ``ra3`` for every RA3 arm (:mod:`ra3lab.ra3.arms`), else the name."""
    name = str(name).lower()
    return "ra3" if penalty(name) is not None else name


def color(name: str) -> str:
    """The fixed colour of arm ``name``; any other name gets one of :data:`OTHER`, the same in every run."""
    known = ARMS.get(_arm(name))
    return known[1] if known else OTHER[zlib.crc32(str(name).encode()) % len(OTHER)]


def label(name: str) -> str:
    """The display name of arm ``name`` ("ra3" -> "RA3", "ra3_c0.05" -> "RA3 (c=0.05)"); other names as they are."""
    c = penalty(str(name).lower())
    if c is not None:
        return f"RA3 (c={c:g})"
    if str(name).startswith("teacher_s"):
        return f"Teacher (s={str(name).removeprefix('teacher_s')})"
    known = ARMS.get(str(name).lower())
    return known[0] if known else str(name)


MATH = ((r"\|Z_hat\|\^-H", r"$|\hat{Z}|^{-H}$"), (r"\|Z_eps\|", r"$|Z_\epsilon|$"), (r"\|Z\|", r"$|Z|$"),
        (r"\|D_E\|", r"$|D_E|$"), (r"1/\(P0 G B\) \+ L", r"$1/(P_0 G B) + L$"), (r"\bP0\b", r"$P_0$"),
        (r"\bS\*", r"$S^*$"), (r"\bgamma\b", r"$\gamma$"), (r"\btau\b", r"$\tau$"), (r"\bsigma\b", r"$\sigma$"),
        (r"\beps\b", r"$\epsilon$"), (r"\bpenalty c\b", r"penalty $c$"), (r"\bK=", r"$K$="))


def typeset(text: str) -> str:
    """``text`` with the theory's symbols written as they are in plain labels (``|Z_eps|``, ``P0``, ``S*``, ``tau``,
    ...) typeset as math (matplotlib's mathtext): what the figures show, the data keeping the plain names."""
    for plain, symbol in MATH:
        text = re.sub(plain, symbol.replace("\\", "\\\\"), text)      # the symbol as it is, backslashes kept
    return text


def order(names) -> list[str]:
    """``names`` without repeats, the known arms first in the order of :data:`ARMS`, then the rest sorted."""
    rank = {arm: i for i, arm in enumerate(ARMS)}
    return sorted(dict.fromkeys(names), key=lambda name: (rank.get(_arm(name), len(rank)), str(name)))


def figure(panels: int, width: float = FULL, height: float = 2.0, ncols: int | None = None,
           layout: str | None = "constrained"):
    """(figure, [axes] * panels) in the style of :data:`RC`: a grid of ``ncols`` panels a row (all in one row,
    at most 4, by default), ``width`` inches wide, each row ``height`` inches tall; grid cells past ``panels``
    are removed. ``layout``: matplotlib's layout engine (None: place the axes with ``fig.subplots_adjust``)."""
    plt.rcParams.update(RC)
    ncols = ncols or min(panels, 4)
    nrows = math.ceil(panels / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False, layout=layout)
    axes = list(grid.ravel())
    for ax in axes[panels:]:
        fig.delaxes(ax)
    return fig, axes[:panels]


def plain_log(axis) -> None:
    """Log ticks of ``axis`` labelled 1, 2, 5, 10, 20, ... (or the ticks already set) instead of powers of ten;
    no minor ticks."""
    if not isinstance(axis.get_major_locator(), FixedLocator):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_locator(NullLocator())


def log_axes(ax, xticks, logy: bool = True) -> None:
    """Log-scaled x (ticks at ``xticks``) and, with ``logy``, y axes of ``ax``, with plain labels."""
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xticks(list(xticks))
    for axis in (ax.xaxis, ax.yaxis) if logy else (ax.xaxis,):
        plain_log(axis)


def save(fig, folder: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as <folder>/<name>.pdf and .png (each through a temporary file and a rename; no creation
    date, so the bytes depend on the figure alone), close it, and return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, metadata in FORMATS.items():
        path = folder / f"{name}.{suffix}"
        tmp = folder / f".{name}.{os.getpid()}.tmp.{suffix}"
        fig.savefig(tmp, bbox_inches="tight", dpi=RC["savefig.dpi"], metadata=metadata)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths
