"""What the studies share: building a family from its config, seeded generators, one figure style."""

from __future__ import annotations

import inspect
import re

import matplotlib.pyplot as plt
import torch
from hydra.utils import get_method, instantiate
from matplotlib.ticker import FormatStrFormatter, LogLocator
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import track

from ra3lab.envs.family import OptionFamily
from ra3lab.errors import ConfigError

plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                     "axes.spines.right": False, "legend.frameon": False})


def make_family(env: DictConfig, **overrides) -> OptionFamily:
    """Instantiate the family named by ``env._target_`` with ``overrides`` on top of its keys.

    A key the family does not take (e.g. after ``env=star`` in an experiment tuned for chains) is a
    ConfigError listing the family's parameters."""
    try:
        return instantiate(env, **overrides)
    except ConfigError:
        raise
    except Exception as error:  # Hydra wraps the constructor's own error; surface the ConfigError inside
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if unexpected:
            function = get_method(env._target_)
            takes = ", ".join(inspect.signature(function).parameters)
            raise ConfigError(f"env.{unexpected.group(1)}", "(unknown to this environment)",
                              f"{env._target_} takes {takes}; drop or rename the key (e.g. ~env.{unexpected.group(1)})"
                              ) from None
        raise


def progress(items, description: str):
    """Iterate over ``items`` with a progress bar on stderr (hidden when stderr is not a terminal)."""
    console = Console(stderr=True)
    return track(list(items), description=description, console=console, disable=not console.is_terminal)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def figure(ncols: int = 1, width: float = 6.0, height: float = 3.6):
    """A new figure in the project's style with ``ncols`` axes side by side."""
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False, layout="constrained")
    return fig, axes[0]


def log_axes(ax, xticks, logy: bool = True) -> None:
    """Log-scaled axes with plain labels at ``xticks`` and no minor-tick clutter."""
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xticks(list(xticks), [f"{t:g}" for t in xticks])
    ax.minorticks_off()
