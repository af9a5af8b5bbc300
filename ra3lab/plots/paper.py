"""The appendix's figures and tables, built from stored runs (``ra3lab plot <kind>``).

- ``convergence``: RLVR curves (a ``curves.csv`` of ``init, seed, task_set, step, value``, or a sweep's rlvr
  runs) as IQM curves with bootstrap bands, plus the convergence table in Markdown and LaTeX;
- ``theory``: theory next to practice from the theory experiments' and the CodeWorld study's
  summaries: Theorem 3.5's slopes against both forms, Theorem 3.6's sweeps against the bound per
  tau, and RA3's thought rate against the penalty c;
- ``heatmap``: one value of a sweep's runs (a summary column, or a measure of each run's RLVR curve) over two
  swept keys, each cell the IQM over the other keys (seeds) with a 95% bootstrap interval, and its table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ra3lab.errors import check
from ra3lab.plots import style
from ra3lab.plots.curves import convergence_figure
from ra3lab.plots.heatmap import heatmap_cells, sweep_heatmap, sweep_runs
from ra3lab.plots.tables import convergence_table, to_latex, to_markdown
from ra3lab.plots.theory import theory_figure
from ra3lab.ra3.arms import ra3_by_penalty


def latest_summary(runs: Path, experiment: str) -> dict | None:
    """The newest finished run of ``experiment`` under ``runs``, or None."""
    summaries = sorted((runs / experiment).glob("*/summary.json"), key=lambda path: path.stat().st_mtime)
    return json.loads(summaries[-1].read_text()) if summaries else None


def sweep_curves(sweep_dir: Path, panel: str = "estep.max_thought_tokens") -> pd.DataFrame:
    """The long table of curves (``init, seed, task_set, step, value`` and the rates) of a sweep's RLVR runs: each
    point whose run summary holds a curve, ``init`` its arm, ``seed`` its ``rlvr.seed``, one task set per value
    of the swept key ``panel`` (``L_z=8``: one panel each; a single panel when it is not swept). A run two points
    share (an NTP arm at every L_z) is drawn in each of their panels."""
    from ra3lab.sweep.status import read_manifest, run_path

    rows = []
    for entry in read_manifest(sweep_dir):
        path = run_path(sweep_dir, entry) / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        if "curve" not in summary:
            continue
        task_set = f"L_z={entry['params'][panel]}" if panel in entry["params"] else "codeworld"
        rates = {name: summary[name] for name in ("thought_rate", "truncation_rate") if name in summary}
        rows += [{"init": summary["init"], "seed": int(entry["params"].get("rlvr.seed", summary.get("rlvr_seed", 0))),
                  "task_set": task_set, "step": step, "value": value,
                  **{name: values[i] for name, values in rates.items()}}
                 for i, (step, value) in enumerate(zip(summary["curve_steps"], summary["curve"]))]
    check(bool(rows), "source", str(sweep_dir), "no run of this sweep holds an RLVR curve yet (a sweep over the "
          "rlvr stage, e.g. ra3_penalty_budget): launch it, or give a codeworld_rlvr run directory")
    return pd.DataFrame(rows).drop_duplicates(["init", "seed", "task_set", "step"])


def convergence(source: Path, out: Path, threshold: float = 0.5, reps: int = 2000) -> dict:
    """Figure and tables from ``source``: a curves.csv, a run directory holding one, or a sweep directory over
    the rlvr stage (:func:`sweep_curves`)."""
    if (source / "manifest.jsonl").exists():
        table = sweep_curves(source)
    else:
        path = source / "curves.csv" if source.is_dir() else source
        check(path.is_file(), "source", str(source),
              "give a curves.csv, a codeworld_rlvr run directory holding one, or a sweep over the rlvr stage")
        table = pd.read_csv(path)
    summary = convergence_table(table, threshold, reps=reps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "convergence.md").write_text(to_markdown(summary))
    (out / "convergence.tex").write_text(to_latex(summary))
    figures = style.save(convergence_figure(table, "held-out pass@1", threshold=threshold), out, "convergence")
    return {"figures": [str(p) for p in figures], "tables": [str(out / "convergence.md"), str(out / "convergence.tex")]}


def theory_items(runs: Path) -> list[dict]:
    """Panels for every theory and practice quantity that has a stored run."""
    items = []
    t2 = latest_summary(runs, "t2_pruning")
    if t2:
        slopes = t2["thm_3_5_slopes"]
        group = "none/observed" if "none/observed" in slopes else next(iter(slopes))   # the theorem's own setting
        for knob, label in (("n_options", "|Z|"), ("n_eps", "|Z_eps|"), ("sigma", "sigma")):
            fit = slopes[group][knob]
            if fit["slope"] is None:
                continue
            items.append({"name": f"Thm 3.5 ({group}): slope vs {label}", "measured": fit["slope"], "low": fit["low"],
                          "high": fit["high"], "ylabel": "log-log slope of |D_E|",
                          "predicted": {"K=|Z|": fit["predicted_full"], "K=|Z_eps|": fit["predicted_eps"]}})
    t3 = latest_summary(runs, "t3_horizon")
    if t3:
        gamma = max(row["gamma"] for row in t3["settings"])
        for family in t3["families"]:
            rows = sorted((row for row in t3["settings"] if row["gamma"] == gamma and row["family"] == family),
                          key=lambda row: row["tau"])
            items.append({"name": f"Thm 3.6, {family} (gamma {gamma:g})", "x": [row["tau"] for row in rows],
                          "xlabel": "tau", "measured": [row["policy_sweeps"] for row in rows],
                          "ylabel": "sweeps to eps-optimal", "predicted": {"bound": [row["bound"] for row in rows]},
                          "xscale": "log", "yscale": "log"})
    codeworld = latest_summary(runs, "codeworld_ra3")
    if codeworld:
        ra3 = ra3_by_penalty(codeworld["arms"])
        items.append({"name": "RA3 thought rate", "x": [c for c, _ in ra3], "xlabel": "penalty c", "xscale": "log",
                      "measured": [row["infused_rate"] for _, row in ra3], "ylabel": "thoughts per line",
                      "predicted": {"intent boundaries": [codeworld["boundary_rate"]] * len(ra3)}})
    check(len(items) > 0, "runs", str(runs), "no theory or CodeWorld runs yet: run `ra3lab theory check` or "
                                    "`ra3lab run codeworld_ra3` first")
    return items


def theory(runs: Path, out: Path) -> dict:
    figures = style.save(theory_figure(theory_items(runs)), out, "theory_vs_practice")
    return {"figures": [str(p) for p in figures]}


def heatmap(sweep_dir: Path, out: Path, x: str, y: str, value: str, threshold: float | None = None,
            reduce: str = "iqm", reps: int = 2000) -> dict:
    """Figure and cell table (:mod:`ra3lab.plots.heatmap`) of ``value`` over swept keys ``x`` and ``y``, the other
    swept keys pooled, as heatmap_<sweep>_<value>.pdf, .png and .csv under ``out``; ``threshold``: the pass@1 of
    value=steps_to_threshold. Returns the figures, the table's path and its cells (x, y, value, low, high, n)."""
    check(value != "steps_to_threshold" or threshold is not None, "threshold", threshold,
          "value=steps_to_threshold needs threshold=T, the held-out pass@1 to reach (in [0, 1])")
    cells = heatmap_cells(sweep_runs(sweep_dir, threshold), x, y, value, reduce, reps)
    name = "_".join(["heatmap", sweep_dir.parent.name, re.sub(r"[^\w.-]+", "_", value)])
    figures = style.save(sweep_heatmap(cells, threshold), out, name)
    cells.to_csv(out / f"{name}.csv", index=False)
    return {"figures": [str(p) for p in figures], "table": str(out / f"{name}.csv"), "cells": cells.to_dict("records")}
