"""``paper/runs.yaml``: the runs the appendix is built from, each pinned by its id.

A pin names an experiment (``ra3lab run``) or a sweep (``ra3lab sweep``), whether at ``--quick`` scale, its
overrides, and the id of the run (a hash of its resolved config, :func:`ra3lab.runs.run_id`) or of the sweep
directory it was built from. ``ra3lab paper pin`` fills in the ids from the runs that exist; ``ra3lab paper
build`` reads only the pinned ones, so a newer run of the same experiment changes nothing.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ra3lab.errors import ConfigError, check


@dataclass(frozen=True)
class Pin:
    """One pinned run (``kind`` run) or sweep (``kind`` sweep) of ``experiment`` (a sweep's name for a sweep)."""

    name: str
    experiment: str
    kind: str = "run"
    quick: bool = False
    overrides: tuple[str, ...] = ()
    id: str | None = None
    commit: str | None = None
    used_by: tuple[str, ...] = field(default=())

    def command(self, slurm: bool = False) -> str:
        """The command that recreates the pinned run (on a cluster with ``slurm``)."""
        words = ["ra3lab", self.kind, self.experiment, *(["--quick"] if self.quick else []), *self.overrides]
        if slurm:
            words += ["--launcher", "slurm", "--profile", "<yours>"]
        return shlex.join(words).replace("'<yours>'", "<yours>")

    def path(self, runs: Path) -> Path:
        """Where the pinned run lives under the runs folder ``runs``."""
        check(self.id is not None, f"pins.{self.name}.id", None, "this pin has no run yet: run `ra3lab paper pin`")
        return runs / "sweeps" / self.experiment / str(self.id) if self.kind == "sweep" else \
            runs / self.experiment / str(self.id)

    def as_yaml(self) -> dict:
        entry = {"experiment": self.experiment, "kind": self.kind, "quick": self.quick,
                 "overrides": list(self.overrides), "id": self.id, "commit": self.commit,
                 "used_by": list(self.used_by)}
        return entry if self.kind == "sweep" else {key: value for key, value in entry.items() if key != "kind"}


KEYS = ("experiment", "kind", "quick", "overrides", "id", "commit", "used_by")
HEADER = ("# The runs the appendix is built from (`ra3lab paper build` reads only these). Written by\n"
          "# `ra3lab paper pin`, which fills in `id` (the run's config hash, or the sweep directory) and\n"
          "# `commit` from the runs that exist; edit `experiment`, `quick` and `overrides` to pin another run,\n"
          "# then pin again.\n")


def load_pins(path: Path) -> dict[str, Pin]:
    """The pins of ``path`` by name; ConfigError naming the pin and key that is wrong."""
    check(path.is_file(), "pins", str(path), "no pin file: the repository ships paper/runs.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError("pins", str(path), f"is not valid YAML ({error}): restore it with `git checkout "
                          f"{path}`") from error
    check(isinstance(raw, dict), "pins", str(path), "must map pin names to {experiment, quick, overrides, id}")
    pins = {}
    for name, entry in raw.items():
        check(isinstance(entry, dict) and "experiment" in entry, f"pins.{name}", entry,
              "needs at least `experiment` (and `quick`, `overrides`, `id`)")
        unknown = sorted(set(entry) - set(KEYS))
        check(not unknown, f"pins.{name}.{unknown[0] if unknown else ''}", unknown, f"use only {', '.join(KEYS)}")
        check(entry.get("kind", "run") in ("run", "sweep"), f"pins.{name}.kind", entry.get("kind"),
              "choose run (ra3lab run) or sweep (ra3lab sweep)")
        check(isinstance(entry.get("overrides") or [], list), f"pins.{name}.overrides", entry.get("overrides"),
              "must be a list of key=value overrides")
        pins[name] = Pin(name, str(entry["experiment"]), entry.get("kind", "run"), bool(entry.get("quick", False)),
                         tuple(map(str, entry.get("overrides") or ())),
                         None if entry.get("id") is None else str(entry["id"]), entry.get("commit"),
                         tuple(entry.get("used_by") or ()))
    return pins


def save_pins(pins: dict[str, Pin], path: Path) -> None:
    path.write_text(HEADER + yaml.safe_dump({name: pin.as_yaml() for name, pin in pins.items()}, sort_keys=False,
                                            width=120))


def missing(pin: Pin, runs: Path) -> ConfigError:
    """The error for a pinned run that is not (or not wholly) under ``runs``: the commands that recreate it."""
    where = runs / "sweeps" / pin.experiment if pin.kind == "sweep" else runs / pin.experiment
    return ConfigError(f"pins.{pin.name}", f"{pin.experiment}/{pin.id}",
                       f"is not a finished {pin.kind} under {where}: recreate it with `{pin.command()}` "
                       f"(or on a cluster: `{pin.command(slurm=True)}`), or pin another with `ra3lab paper pin`")


def check_present(pins: dict[str, Pin], runs: Path) -> None:
    """ConfigError listing every pin whose run (or sweep) is not finished under ``runs``, each with the command
    that recreates it, so that all of them can be recreated at once. A run id found under another experiment is
    left to :func:`read_summary`, which says so."""
    absent = [pin for pin in pins.values() if pin.id is None or not (
        (pin.path(runs) / ("manifest.jsonl" if pin.kind == "sweep" else "summary.json")).is_file()
        or (pin.kind == "run" and any(runs.glob(f"*/{pin.id}/summary.json"))))]
    if len(absent) == 1:
        raise missing(absent[0], runs)
    if absent:
        raise ConfigError("pins", ", ".join(pin.name for pin in absent),
                          f"are not finished under {runs}: recreate them with "
                          + "; ".join(f"`{pin.command()}`" for pin in absent)
                          + " (on a cluster, add `--launcher slurm --profile <yours>` to each), or pin others with "
                          "`ra3lab paper pin`")


def read_summary(pin: Pin, runs: Path) -> dict:
    """The summary of a pinned run, checked to be of the pin's experiment; ConfigError naming the pin otherwise
    (missing: the command that recreates it; of another experiment; corrupted)."""
    check(pin.kind == "run", f"pins.{pin.name}.kind", pin.kind, "a sweep has no single summary: read its runs")
    path = pin.path(runs) / "summary.json"
    if not path.is_file():
        elsewhere = sorted(str(other.parent.relative_to(runs)) for other in runs.glob(f"*/{pin.id}/summary.json"))
        if elsewhere:
            raise ConfigError(f"pins.{pin.name}.experiment", pin.experiment,
                              f"run {pin.id} is a run of {elsewhere[0].split('/')[0]}, not of {pin.experiment}: set "
                              f"the pin's experiment to the run's, or pin a {pin.experiment} run with "
                              f"`ra3lab paper pin`")
        raise missing(pin, runs)
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"pins.{pin.name}", str(path), f"is corrupted ({error}): delete {path.parent} and "
                          f"recreate it with `{pin.command()}`") from error
    found = summary.get("experiment") if isinstance(summary, dict) else None
    check(found == pin.experiment, f"pins.{pin.name}.experiment", pin.experiment,
          f"run {pin.id} holds a summary of {found}: set the pin's experiment to it, or pin a {pin.experiment} run "
          "with `ra3lab paper pin`")
    return summary
