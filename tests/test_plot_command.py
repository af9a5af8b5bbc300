"""`ra3lab plot`: the appendix's figures and tables from stored results, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ra3lab.cli import main


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_convergence_figures_and_tables_from_a_curves_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [{"init": init, "seed": seed, "task_set": "codeworld", "step": step,
             "value": min(1.0, ceiling * step / 10 + rng.normal(0, 0.02))}
            for init, ceiling in (("base", 0.3), ("ntp", 0.5), ("ra3", 0.7)) for seed in range(3) for step in range(11)]
    pd.DataFrame(rows).to_csv(tmp_path / "curves.csv", index=False)
    assert main(["plot", "convergence", str(tmp_path), "threshold=0.45", "--out", str(tmp_path / "out"), "--json"]) == 0
    result = last_json(capsys)
    assert all((tmp_path / "out" / name).exists() for name in ("convergence.pdf", "convergence.png", "convergence.md"))
    table = (tmp_path / "out" / "convergence.md").read_text()
    assert "RA3" in table and "NTP" in table and result["figures"][0].endswith(".pdf")
    assert "\\begin{tabular}" in (tmp_path / "out" / "convergence.tex").read_text()


def test_plot_errors_name_what_is_missing(tmp_path, capsys, isolated_runs):
    assert main(["plot", "convergence", str(tmp_path), "--json"]) == 2
    assert last_json(capsys)["field"] == "source"
    assert main(["plot", "theory", "--out", str(tmp_path), "--json"]) == 2       # no runs yet
    assert last_json(capsys)["field"] == "runs"
    assert main(["plot", "heatmap", "t4_budget_penalty", "x=budget", "--json"]) == 2
    assert last_json(capsys)["field"] == "y"
