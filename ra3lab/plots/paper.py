"""The appendix's figures and tables, built from stored runs (``ra3lab plot <kind>``).

- ``convergence``: RLVR curves (a ``curves.csv`` of ``init, seed, task_set, step, value``, or a sweep's rlvr
  runs) as IQM curves with bootstrap bands, plus the convergence table in Markdown and LaTeX;
- ``theory``: the theorems' measurements next to their predictions from the theory experiments' and the CodeWorld
  study's summaries (the appendix's pinned runs, or the newest of each for ``ra3lab plot theory``): Theorem
  3.5's slopes against both forms, Theorem 3.6's sweeps against the bound per tau, and RA3's thought rate
  against the penalty c;
- ``plan`` (``theory_vs_practice``): the predictions (P0, S*) against RLVR on CodeWorld-Plan, from one
  codeworld_plan run, or from several (a sweep, or run directories) over |D_E| x |Z_eps| (pruning) or over
  H x tau (horizon: S* against tau at equal total lines, with a verdict per pair of studies and arm);
- ``heatmap``: one value of a sweep's runs (a summary column, or a measure of each run's RLVR curve) over two
  swept keys, each cell the IQM over the other keys (seeds) with a 95% bootstrap interval, and its table.

Each returns its files and what it drew (``data``; the heatmap's ``cells``), which ``ra3lab paper check`` compares.
"""

from __future__ import annotations

import json
import math
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

THEORY_SOURCES = ("t2_pruning", "t3_horizon", "codeworld_ra3")     # the experiments the theory figure reads


def latest_summaries(runs: Path, experiments: tuple[str, ...] = THEORY_SOURCES) -> dict[str, dict]:
    """The summary of the newest finished run of each of ``experiments`` under ``runs`` that has one (``ra3lab
    plot theory``; the appendix reads its pinned runs instead, :mod:`ra3lab.appendix`)."""
    found = {}
    for experiment in experiments:
        paths = sorted((runs / experiment).glob("*/summary.json"), key=lambda path: path.stat().st_mtime)
        if paths:
            found[experiment] = {**json.loads(paths[-1].read_text()), "run_dir": str(paths[-1].parent)}
    return found


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
    return {"figures": [str(p) for p in figures], "tables": [str(out / "convergence.md"), str(out / "convergence.tex")],
            "data": {"curves": table.to_dict("records"), "table": summary.to_dict("records")}}


def theory_items(summaries: dict[str, dict]) -> list[dict]:
    """Panels for every theory and practice quantity whose run is among ``summaries`` (experiment -> summary of
    :data:`THEORY_SOURCES`)."""
    items = []
    t2 = summaries.get("t2_pruning")
    if t2:
        slopes = t2["thm_3_5_slopes"]
        group = "none/observed" if "none/observed" in slopes else next(iter(slopes))   # the theorem's own setting
        for knob, label in (("n_options", "|Z|"), ("n_eps", "|Z_eps|"), ("sigma", "sigma")):
            fit = slopes[group][knob]
            if fit["slope"] is None:
                continue
            items.append({"name": f"Thm 3.5: slope vs {label}\n({group})", "measured": fit["slope"], "low": fit["low"],
                          "high": fit["high"], "ylabel": "log-log slope of |D_E|",
                          "predicted": {"K=|Z|": fit["predicted_full"], "K=|Z_eps|": fit["predicted_eps"]}})
    t3 = summaries.get("t3_horizon")
    if t3:
        gamma = max(row["gamma"] for row in t3["settings"])
        for family in t3["families"]:
            rows = sorted((row for row in t3["settings"] if row["gamma"] == gamma and row["family"] == family),
                          key=lambda row: row["tau"])
            items.append({"name": f"Thm 3.6: {family}\n(gamma {gamma:g})", "x": [row["tau"] for row in rows],
                          "xlabel": "tau", "measured": [row["policy_sweeps"] for row in rows],
                          "ylabel": "sweeps to eps-optimal", "predicted": {"bound": [row["bound"] for row in rows]},
                          "xscale": "log", "yscale": "log"})
    codeworld = summaries.get("codeworld_ra3")
    if codeworld:
        ra3 = ra3_by_penalty(codeworld["arms"])
        items.append({"name": "RA3 thought rate", "x": [c for c, _ in ra3], "xlabel": "penalty c", "xscale": "log",
                      "measured": [row["infused_rate"] for _, row in ra3], "ylabel": "thoughts per line",
                      "predicted": {"intent boundaries": [codeworld["boundary_rate"]] * len(ra3)}})
    check(len(items) > 0, "runs", sorted(summaries), "no theory or CodeWorld runs yet: run `ra3lab theory check` "
          "or `ra3lab run codeworld_ra3` first")
    return items


def theory(summaries: dict[str, dict], out: Path) -> dict:
    """The theory figure from ``summaries`` (experiment -> summary); returns its paths, its panels' data and the
    runs it read."""
    items = theory_items(summaries)
    figures = style.save(theory_figure(items), out, "theory")
    return {"figures": [str(p) for p in figures], "data": items,
            "runs": {name: summary.get("run_dir") for name, summary in summaries.items()}}


def plan_cells(sweep_dir: Path) -> list[dict]:
    """The summaries of a sweep's finished ``codeworld_plan`` studies."""
    from ra3lab.sweep.status import read_manifest, run_path

    paths = [run_path(sweep_dir, entry) / "summary.json" for entry in read_manifest(sweep_dir)]
    cells = [summary for summary in (json.loads(path.read_text()) for path in paths if path.exists())
             if "P0" in summary]
    check(bool(cells), "source", str(sweep_dir), "no finished codeworld_plan study in this sweep yet: launch "
          "`ra3lab sweep codeworld_plan_pruning` or `ra3lab sweep codeworld_plan_horizon` first")
    return cells


def plan_items(cells: list[dict], arms: tuple[str, ...] = ("ntp", "dsl")) -> list[dict]:
    """Panels of ``codeworld_plan`` summaries over the corpus size |D_E| and the family skills |Z_eps|: per |Z_eps|
    and arm, P0 and S* (absolute threshold) against |D_E|, measured with its interval next to the prediction.
    S*'s lock-in constant is fitted once, on NTP over every cell
    (:func:`~ra3lab.studies.codeworld_plan.sweep_lock_in`), so that NTP's cells test the form too."""
    from ra3lab.studies.codeworld_plan import at_budget, interval, predicted_steps, sweep_lock_in

    lock, budget = sweep_lock_in(cells), max(cell["rlvr_steps"] for cell in cells)
    items = []
    for z_eps in sorted({cell["world"]["Z_eps"] for cell in cells}):
        rows = sorted((cell for cell in cells if cell["world"]["Z_eps"] == z_eps),
                      key=lambda cell: cell["predictions"]["corpus_programs"])
        sizes = [cell["predictions"]["corpus_programs"] for cell in rows]
        for arm in arms:
            if not all(arm in cell["P0"] for cell in rows):
                continue
            p0 = [cell["P0"][arm] for cell in rows]
            items.append({"name": f"P0, {arm}, |Z_eps|={z_eps}", "x": sizes, "xlabel": "|D_E|", "xscale": "log",
                          "measured": [r["measured"] for r in p0], "low": [r["low"] for r in p0],
                          "high": [r["high"] for r in p0], "ylabel": "pass@1 before RL",
                          "predicted": {"|Z_hat|^-H": [r["predicted"] for r in p0]}})
            reached = [interval(cell["steps_to_threshold"]["absolute"][arm]) for cell in rows]
            items.append({"name": f"S*, {arm}, |Z_eps|={z_eps}", "x": sizes, "xlabel": "|D_E|", "xscale": "log",
                          "measured": [at_budget(r[0], budget) for r in reached],
                          "low": [at_budget(r[1], budget) for r in reached],
                          "high": [at_budget(r[2], budget) for r in reached], "ylabel": "RLVR steps to threshold",
                          "predicted": {"1/(P0 G B) + L": [
                              math.nan if math.isnan(lock) else at_budget(predicted_steps(cell, arm, lock), budget)
                              for cell in rows]}})
    return items


def run_summary(run_dir: Path) -> dict:
    """The summary of a finished ``codeworld_plan`` run directory; ConfigError naming it otherwise."""
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    check("P0" in summary, "source", str(run_dir), "give a finished codeworld_plan run directory or a sweep of "
          "codeworld_plan (`ra3lab run codeworld_plan --quick`)")
    return summary


def plan(sources: list[Path], out: Path) -> dict:
    """``theory_vs_practice``: the predictions against the measurements of one codeworld_plan run (P0 and S* per
    arm), or of several studies (a sweep directory, or several run directories). Where the studies differ in
    skills per plan H or lines per skill tau: S* against tau at fixed H x tau and a verdict per pair of cells and
    arm (:mod:`ra3lab.studies.plan_horizon`), also written to ``horizon.json`` and ``horizon.md``; otherwise P0
    and S* against |D_E| per |Z_eps| (:func:`plan_items`)."""
    from ra3lab.studies import plan_horizon
    from ra3lab.studies.codeworld_plan import panels

    result: dict = {}
    if len(sources) == 1 and not (sources[0] / "manifest.jsonl").exists():
        summary = run_summary(sources[0])
        items = panels(summary, summary["rlvr_steps"])
    else:
        cells = plan_cells(sources[0]) if len(sources) == 1 else [run_summary(source) for source in sources]
        if len({plan_horizon.shape(cell) for cell in cells}) > 1:
            items, result["horizon"] = plan_horizon.panels(cells), plan_horizon.judge(cells)
            check(bool(items), "source", " ".join(map(str, sources)), "no two of these studies share H x tau: the "
                  "horizon panels need a pair of cells at the same total lines and different tau")
            out.mkdir(parents=True, exist_ok=True)
            (out / "horizon.json").write_text(json.dumps(result["horizon"], indent=2, default=str))
            (out / "horizon.md").write_text(to_markdown(plan_horizon.table(result["horizon"])))
        else:
            items = plan_items(cells)
    figures = style.save(theory_figure(items, ncols=min(len(items), 4), height=2.0), out, "theory_vs_practice")
    return {"figures": [str(p) for p in figures], "panels": len(items), "data": items, **result}


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
