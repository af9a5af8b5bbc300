"""One table per sweep: a row per run, the swept override keys, then the summary's scalar metrics.

    from ra3lab.sweep.aggregate import load_aggregate
    table = load_aggregate("runs/sweeps/t4_budget_penalty/<hash>")   # a pandas DataFrame

Nested summary dicts are flattened with "/" (``surface_best/regret``); lists (curves, settings,
figures) are left out. Runs without a summary (pending, running, failed) have their state and
empty metric cells. ``aggregate.csv`` in the sweep directory is the same table, written after each launch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ra3lab.errors import ConfigError
from ra3lab.sweep.status import read_manifest, run_path

SCALARS = (int, float, bool, str)


def flatten(summary: dict, prefix: str = "") -> dict:
    """Scalar leaves of ``summary`` as {"a/b": value}; None stays (a missing value), lists are dropped."""
    flat = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, SCALARS) or value is None:
            flat[name] = value
    return flat


def aggregate(sweep_dir: str | Path) -> pd.DataFrame:
    """The sweep's table, read from its manifest and each run's summary.json (always current)."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for entry in read_manifest(sweep_dir):
        path = run_path(sweep_dir, entry)
        row = {**entry["params"], "run_id": entry["run_id"]}
        summary_path, status_path = path / "summary.json", path / "status.json"
        if summary_path.exists():
            row["state"] = "done"
            metrics = flatten(json.loads(summary_path.read_text()))
            row.update({key: value for key, value in metrics.items() if key not in row})
        else:
            row["state"] = json.loads(status_path.read_text())["state"] if status_path.exists() else "pending"
        rows.append(row)
    return pd.DataFrame(rows)


def write_aggregate(sweep_dir: str | Path) -> Path:
    """Write ``aggregate.csv`` into the sweep directory (atomically); returns its path."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "aggregate.csv"
    tmp = path.with_name(".aggregate.csv.tmp")
    aggregate(sweep_dir).to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def load_aggregate(sweep_dir: str | Path) -> pd.DataFrame:
    """The sweep's table: rebuilt from the runs when its manifest is there, else read from aggregate.csv."""
    sweep_dir = Path(sweep_dir)
    if (sweep_dir / "manifest.jsonl").exists():
        return aggregate(sweep_dir)
    if (sweep_dir / "aggregate.csv").exists():
        return pd.read_csv(sweep_dir / "aggregate.csv")
    raise ConfigError("sweep_dir", str(sweep_dir), "is not a sweep directory (no manifest.jsonl or aggregate.csv): "
                      "pass runs/sweeps/<sweep>/<hash>")
