"""Sweep files: ``sweeps/<name>.yaml`` names an experiment and a grid in Hydra's override grammar.

A sweep file::

    # one line: what the sweep is for
    experiment: t3_horizon          # a name in experiments/
    quick: true                     # optional: start from the experiment's `quick:` profile
    fixed:                          # optional: overrides applied to every point (single values)
      - learner.seeds=2
    grid:                           # Hydra sweep overrides, one axis each: a,b,c | range(0,5) | choice(...)
      - gammas=[0.9],[0.99]
      - seed=range(0,3)

The grid is expanded by Hydra's own basic sweeper (``BasicSweeper.split_arguments``), so the
grammar is exactly Hydra's ``--multirun`` grammar: the points are the cartesian product of the
axes, in the order the axes are written. Overrides given on the command line come last: one with
the key of an axis replaces that axis, a new key adds an axis (or a single value).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from ra3lab.errors import ConfigError, check
from ra3lab.files import EXPERIMENTS, SPACES, SWEEPS, Key, load_file

OWN_LINE = "each on its own line as `- key=value` (a YAML [..] list would split at the commas)"
HEADER_KEYS = {   # the keys sweep and search space files share
    "experiment": Key((str,), "the experiment it runs, a name in experiments/", required=True,
                      choices=EXPERIMENTS.names),
    "quick": Key((bool,), "true or false: start from the experiment's `quick:` profile"),
    "fixed": Key((list,), f"a list of Hydra overrides applied to every run, {OWN_LINE}", items=str),
}
SWEEP_KEYS = {**HEADER_KEYS, "grid": Key((list,), "a list of Hydra overrides, one axis each: `- key=a,b` or "
                                                  f"`- key=range(0,5)`, {OWN_LINE}", items=str)}


@dataclass(frozen=True)
class SweepSpec:
    """A sweep file as loaded: ``fixed`` and ``grid`` are lists of Hydra override strings."""

    name: str
    experiment: str
    quick: bool = False
    fixed: tuple[str, ...] = ()
    grid: tuple[str, ...] = ()
    extra: tuple[str, ...] = field(default=())   # command-line overrides, applied after the grid


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its full override list and the swept keys' values (for tables)."""

    overrides: tuple[str, ...]
    params: dict


def load_spec(name: str, extra: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    """The sweep ``sweeps/<name>.yaml`` with command-line overrides ``extra``; ConfigError when invalid."""
    space = name.removesuffix(SPACES.suffix)
    check(not name.endswith(SPACES.suffix) or space not in SPACES.names(), "sweep", name,
          f"is an Optuna search space: run `ra3lab tune {space}`")
    raw = load_file(SWEEPS, name, SWEEP_KEYS)
    return SweepSpec(name=name, experiment=raw["experiment"], quick=raw.get("quick", False),
                     fixed=tuple(raw.get("fixed", ())), grid=tuple(raw.get("grid", ())), extra=tuple(extra))


def _parse(overrides, field_name: str):
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(field_name, " ".join(overrides), f"not Hydra's override grammar: {str(error).splitlines()[0]}"
                          " (axes look like key=a,b,c or key=range(0,5))") from None


def _column(key: str) -> str:
    return key.lstrip("+~")


def _typed(override: str):
    """The value of ``key=value`` as Hydra types it, if a scalar; else the value as written."""
    parsed = OverridesParser.create().parse_override(override)
    value = parsed.value()
    return value if isinstance(value, (int, float, bool, str)) or value is None else parsed.get_value_element_as_str()


def expand(spec: SweepSpec) -> list[Point]:
    """The points of ``spec`` (fixed, then grid, then command-line overrides), expanded by Hydra.

    Raises ConfigError for a parse error, a sweep among ``fixed``, an unsupported sweep type
    (``interval``, ``glob``), or an empty grid.
    """
    fixed = _parse(spec.fixed, f"{spec.name}.fixed")
    for override in fixed:
        check(not override.is_sweep_override(), f"{spec.name}.fixed", override.input_line,
              "a fixed override takes one value: move sweeps (a,b / range / choice) under grid:")
    grid = _parse(spec.grid, f"{spec.name}.grid")
    extra = _parse(spec.extra, "overrides")
    for override in [*grid, *extra]:
        if override.is_sweep_override() and override.is_discrete_sweep():
            try:
                values = list(override.sweep_string_iterator())
            except HydraException as error:
                raise ConfigError(override.get_key_element(), override.input_line,
                                  f"cannot expand it ({error}; glob() is not supported): list the values (a,b,c), "
                                  "or use range(...) / choice(...)") from None
            check(len(values) > 0, override.get_key_element(), override.input_line, "this axis has no values")
    try:
        batches = BasicSweeper.split_arguments([*fixed, *grid, *extra], max_batch_size=None)[0]
    except HydraException as error:
        raise ConfigError("grid", " ".join(spec.grid + spec.extra),
                          f"{error}: a grid sweeps discrete values (a,b,c, range, choice)") from None
    swept = {_column(o.get_key_element()) for o in [*grid, *extra]}
    points = []
    for overrides in batches:
        params = {}
        for override in overrides:
            key = _column(override.split("=", 1)[0])
            if key in swept:
                params[key] = _typed(override)
        points.append(Point(overrides=tuple(overrides), params=params))
    check(len(points) > 0 and bool(spec.grid or spec.extra), "grid", list(spec.grid),
          f"sweep '{spec.name}' has no points: add axes under grid: or key=a,b on the command line")
    return points


def resolved(spec: SweepSpec, points: list[Point]) -> dict:
    """The resolved spec written as ``sweep.yaml``: what was asked and the points it expands to."""
    axes: dict[str, list] = {}
    for point in points:
        for key, value in point.params.items():
            if value not in axes.setdefault(key, []):
                axes[key].append(value)
    return {"sweep": spec.name, "experiment": spec.experiment, "quick": spec.quick, "fixed": list(spec.fixed),
            "grid": list(spec.grid), "overrides": list(spec.extra), "axes": axes, "n_points": len(points),
            "points": [list(point.overrides) for point in points]}


def spec_hash(spec: SweepSpec, points: list[Point]) -> str:
    """12 hex digits naming the sweep directory: the experiment, the quick flag and the set of points.

    Two ways of writing the same grid (``seed=0,1,2`` and ``seed=range(0,3)``) share a directory.
    """
    text = json.dumps({"experiment": spec.experiment, "quick": spec.quick,
                       "points": sorted(sorted(point.overrides) for point in points)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
