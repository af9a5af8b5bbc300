"""The appendix's figures, each drawn from pinned runs by one of :mod:`ra3lab.plots.paper`'s builders.

``paper/content.yaml`` lists them under ``figures:``, ``name: {kind: ..., ...}``:

- ``theory``: ``sources: {t2_pruning: <pin>, t3_horizon: <pin>}`` (and ``codeworld_ra3``), the theorems'
  measurements next to their predictions;
- ``run``: ``source: <pin>, file: <name>``, the figure a pinned run drew itself (``figures/<name>.pdf``);
- ``plan``: ``source: <pin>``, theory next to practice on one codeworld_plan run;
- ``convergence``: ``source: <pin>``, a codeworld_plan run's RLVR curves (its own threshold) and their table;
- ``heatmap``: ``source: <sweep pin>, x, y, value``, one value of a sweep over two swept keys.

Each figure is written as ``<name>.pdf`` under the output folder, and its data (what was drawn; a run's own figure:
the sha256 of its PDF) is returned for ``ra3lab paper check``.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ra3lab.appendix.pins import Pin, missing, read_summary
from ra3lab.errors import check

KINDS = {"theory": ("sources",), "run": ("source", "file"), "plan": ("source",), "convergence": ("source",),
         "heatmap": ("source", "x", "y", "value")}


@dataclass(frozen=True)
class Figure:
    """One figure: its ``name``, its ``kind`` (:data:`KINDS`) and the kind's options (pins by name)."""

    name: str
    kind: str
    options: dict

    def pins(self) -> list[str]:
        """The pins this figure reads."""
        if self.kind == "theory":
            return list(self.options["sources"].values())
        return [self.options["source"]]


def load_figures(raw: dict, pins: dict[str, Pin]) -> list[Figure]:
    """The figures of ``content.yaml``'s ``figures:``; ConfigError naming the figure and key that is wrong."""
    check(isinstance(raw, dict), "figures", raw, "must map figure names to {kind, source, ...}")
    figures = []
    for name, entry in raw.items():
        where = f"figures.{name}"
        check(isinstance(entry, dict) and entry.get("kind") in KINDS, f"{where}.kind",
              entry.get("kind") if isinstance(entry, dict) else entry, f"choose one of {', '.join(KINDS)}")
        options = {key: value for key, value in entry.items() if key != "kind"}
        needs = KINDS[entry["kind"]]
        check(set(needs) <= set(options), where, sorted(options), f"a {entry['kind']} figure needs {', '.join(needs)}")
        figure = Figure(str(name), entry["kind"], options)
        for pin in figure.pins():
            check(pin in pins, f"{where}.source", pin, f"is not a pin of paper/runs.yaml: choose one of "
                  f"{', '.join(pins)}")
        figures.append(figure)
    return figures


def draw(figure: Figure, pins: dict[str, Pin], runs: Path, out: Path) -> object:
    """Write ``figure`` as ``out/<name>.pdf`` from its pinned runs; returns its data."""
    from ra3lab.plots import paper

    folder = out / ".draw" / figure.name           # builders name their own files; the figure is renamed after
    if figure.kind == "run":
        pin = pins[figure.options["source"]]
        read_summary(pin, runs)
        source = pin.path(runs) / "figures" / f"{figure.options['file']}.pdf"
        check(source.is_file(), f"figures.{figure.name}.file", figure.options["file"],
              f"run {pin.id} drew no figures/{figure.options['file']}.pdf: the ones there are "
              f"{sorted(p.stem for p in source.parent.glob('*.pdf'))}")
        drawn, data = source, hashlib.sha256(source.read_bytes()).hexdigest()
    elif figure.kind == "theory":
        summaries = {experiment: read_summary(pins[pin], runs) for experiment, pin in figure.options["sources"].items()}
        result = paper.theory(summaries, folder)
        drawn, data = Path(result["figures"][0]), result["data"]
    elif figure.kind == "heatmap":
        pin = pins[figure.options["source"]]
        if not (pin.path(runs) / "manifest.jsonl").is_file():
            raise missing(pin, runs)
        options = {key: value for key, value in figure.options.items() if key != "source"}
        result = paper.heatmap(pin.path(runs), folder, **options)
        drawn, data = Path(result["figures"][0]), result["cells"]
    else:
        pin = pins[figure.options["source"]]
        summary = read_summary(pin, runs)
        if figure.kind == "plan":
            result = paper.plan([pin.path(runs)], folder)
        else:
            result = paper.convergence(pin.path(runs), folder, threshold=summary["threshold"]["absolute"])
            shutil.copyfile(folder / "convergence.tex", out / f"{figure.name}_table.tex")
        drawn, data = Path(result["figures"][0]), result["data"]
    shutil.copyfile(drawn, out / f"{figure.name}.pdf")
    shutil.rmtree(folder, ignore_errors=True)
    return data
