"""`ra3lab plot heatmap`: a value over two swept keys with seed intervals, on constructed sweep directories."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from ra3lab import stats
from ra3lab.cli import main
from ra3lab.errors import ConfigError
from ra3lab.plots import paper
from ra3lab.plots.heatmap import heatmap_cells, sweep_heatmap, sweep_runs
from ra3lab.plots.style import save

ARMS, LENGTHS, SEEDS = ("ntp", "ra3_c0.2", "ra3_c0.01", "ra3_c0.05"), (4, 8), (0, 1, 2, 3)
STEPS = [0, 10, 20, 30, 40]
LZ = "estep.max_thought_tokens"
# pass@1 = level * step / 40 + 0.01 seed: small c thinks more and learns faster; with T = 0.5, ra3_c0.2 never
# reaches it, and ntp at L_z = 4 only in seeds 2 and 3 (0.48 + 0.02, 0.48 + 0.03 at step 40).
LEVELS = {"ra3_c0.01": 0.9, "ra3_c0.05": 0.7, "ra3_c0.2": 0.3, "ntp": 0.48}
REPS = 200


def curve(arm: str, length: int, seed: int, levels: dict) -> list[float]:
    level = levels[arm] + (0.05 if length == 8 and arm != "ntp" else 0.0)    # longer thoughts help RA3 a little
    return [level * step / 40 + 0.01 * seed for step in STEPS]


def make_sweep(root, levels=LEVELS, lengths=LENGTHS):
    """A sweep directory <root>/runs/sweeps/rlvr_grid/<hash>/ over (arm, L_z, rlvr.seed) whose runs hold
    summaries with constructed curves, and one pending run (no summary)."""
    sweep_dir = root / "runs" / "sweeps" / "rlvr_grid" / "0123abcd"
    sweep_dir.mkdir(parents=True)
    points = [{"arm": arm, LZ: length, "rlvr.seed": seed} for arm in ARMS for length in lengths for seed in SEEDS]
    entries = []
    for i, params in enumerate([*points, {"arm": "ra3_c0.05", LZ: lengths[0], "rlvr.seed": 9}]):   # 9: pending
        run_dir = root / "runs" / "codeworld_rlvr" / f"run{i:03d}"
        run_dir.mkdir(parents=True)
        if params["rlvr.seed"] in SEEDS:
            values = curve(params["arm"], params[LZ], params["rlvr.seed"], levels)
            summary = {"init": params["arm"], "curve_steps": STEPS, "curve": values, "final_pass": values[-1]}
            (run_dir / "summary.json").write_text(json.dumps(summary))
        entries.append({"index": i, "params": params, "experiment": "codeworld_rlvr", "run_id": run_dir.name,
                        "run_dir": str(run_dir), "job_id": None})
    (sweep_dir / "manifest.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    return sweep_dir


@pytest.fixture
def sweep_dir(tmp_path):
    return make_sweep(tmp_path)


def cells_of(sweep_dir, value="auc", threshold=0.5, **kwargs) -> pd.DataFrame:
    return heatmap_cells(sweep_runs(sweep_dir, threshold), "arm", LZ, value, reps=REPS, **kwargs)


def expected(arm, length, measure) -> tuple:
    """(point, low, high) of a cell straight from ra3lab.stats: the IQM over seeds of the runs' measure."""
    values = np.array([measure(np.array(curve(arm, length, seed, LEVELS)), np.array(STEPS)) for seed in SEEDS])
    return stats.stratified_bootstrap_ci(values, stats.iqm, REPS, 0.95, 0)


def test_each_cell_is_the_iqm_over_seeds_with_its_bootstrap_interval(sweep_dir):
    cells = cells_of(sweep_dir)
    assert list(cells.columns) == ["arm", LZ, "value", "low", "high", "n"]
    assert list(cells["arm"][:4]) == ["ra3_c0.01", "ra3_c0.05", "ra3_c0.2", "ntp"]    # by c, then the reference
    assert list(cells[LZ]) == [4] * 4 + [8] * 4 and (cells["n"] == 4).all()   # the pending run is no value
    for row in cells.itertuples(index=False):
        point, low, high = expected(row.arm, row[1], stats.area_under_curve)
        assert (row.value, row.low, row.high) == pytest.approx((point, low, high))
        assert row.low <= row.value <= row.high
    final = cells_of(sweep_dir, "final").set_index(["arm", LZ])
    assert final.loc[("ra3_c0.05", 8), "value"] == pytest.approx(expected("ra3_c0.05", 8, lambda c, s: c[-1])[0])


def test_a_threshold_never_reached_reads_never(sweep_dir):
    cells = cells_of(sweep_dir, "steps_to_threshold").set_index(["arm", LZ])
    assert np.isinf(cells.loc[("ra3_c0.2", 4), ["value", "low", "high"]].astype(float)).all()
    point, low, high = expected("ra3_c0.01", 4, lambda c, s: stats.steps_to_threshold(c, s, 0.5))
    assert tuple(cells.loc[("ra3_c0.01", 4), ["value", "low", "high"]]) == pytest.approx((point, low, high))
    mixed = cells.loc[("ntp", 4)]              # two seeds reach 0.5 at step 40, two never: the IQM never does
    assert np.isinf(mixed["value"]) and mixed["low"] == 40 and np.isinf(mixed["high"])
    texts = {t.get_text() for t in sweep_heatmap(cells.reset_index(), threshold=0.5).axes[0].texts}
    assert {"never", "never [40, never]", f"{point:.0f} [{low:.0f}, {high:.0f}]"} <= texts


def test_axes_are_named_in_words_and_every_cell_in_one_format(sweep_dir):
    fig = sweep_heatmap(cells_of(sweep_dir))
    ax, colorbar = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("penalty per thought c", "thought length L_z (tokens)")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.05", "0.2", "NTP"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["4", "8"]
    assert colorbar.get_ylabel() == "RLVR AUC (held-out pass@1)\nIQM over RLVR seed [95% CI]"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 8 and all(re.fullmatch(r"0\.\d\d \[0\.\d\d, 0\.\d\d\]", text) for text in texts), texts
    steps = sweep_heatmap(cells_of(sweep_dir, "steps_to_threshold"), threshold=0.5).axes
    assert steps[1].get_ylabel().startswith("GRPO steps to pass@1 >= 0.5\n")
    assert all(re.fullmatch(r"(\d+|never)( \[(\d+|never), (\d+|never)\])?", t.get_text()) for t in steps[0].texts)


def test_the_ranking_of_cells_follows_the_curves(tmp_path):
    def ranking(levels, folder):
        cells = cells_of(make_sweep(tmp_path / folder, levels))
        return list(cells[cells[LZ] == 8].sort_values("value")["arm"])

    assert ranking(LEVELS, "constructed") == ["ra3_c0.2", "ntp", "ra3_c0.05", "ra3_c0.01"]
    flipped = {"ra3_c0.01": 0.3, "ra3_c0.05": 0.7, "ra3_c0.2": 0.9, "ntp": 0.48}   # large c learns fastest instead
    assert ranking(flipped, "flipped") == ["ra3_c0.01", "ntp", "ra3_c0.05", "ra3_c0.2"]


def test_the_command_writes_figure_table_and_cells(sweep_dir, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["plot", "heatmap", str(sweep_dir), "x=arm", f"y={LZ}", "value=steps_to_threshold",
                 "threshold=0.5", "reps=100", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    name = "heatmap_rlvr_grid_steps_to_threshold"
    assert summary["figures"] == [str(out / f"{name}.pdf"), str(out / f"{name}.png")]
    assert summary["table"] == str(out / f"{name}.csv")
    table = pd.read_csv(summary["table"])
    assert list(table.columns) == ["arm", LZ, "value", "low", "high", "n"] and len(table) == len(summary["cells"]) == 8
    never = next(cell for cell in summary["cells"] if cell["arm"] == "ra3_c0.2")
    assert never["value"] is None and never["n"] == 4       # inf in the table, None in JSON
    assert np.isinf(table.loc[table["arm"] == "ra3_c0.2", "value"]).all()


def error(call, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_a_missing_key_or_value_names_the_field_and_what_there_is(sweep_dir, tmp_path):
    runs = sweep_runs(sweep_dir, 0.5)
    typo = error(heatmap_cells, runs, "arm", "estep.max_thougth_tokens", "auc")
    assert typo.field == "y" and f"arm, {LZ}, rlvr.seed" in str(typo)
    missing = error(heatmap_cells, runs, "arm", LZ, "pass_at_1")
    assert missing.field == "value" and "auc" in str(missing) and "final_pass" in str(missing)
    assert error(heatmap_cells, runs, "arm", "arm", "auc").field == "y"
    assert error(heatmap_cells, runs, "arm", LZ, "auc", reduce="max").field == "reduce"
    assert error(paper.heatmap, sweep_dir, tmp_path, "arm", LZ, "steps_to_threshold").field == "threshold"
    no_curves = error(heatmap_cells, runs.drop(columns=["auc"]), "arm", LZ, "auc")
    assert "curve_steps and curve" in str(no_curves)


def test_one_value_of_an_axis_says_what_to_sweep(tmp_path):
    runs = sweep_runs(make_sweep(tmp_path, lengths=(8,)))
    flat = error(heatmap_cells, runs, "arm", LZ, "auc")
    assert flat.field == "y" and "has 1 value(s) (8): sweep estep.max_thought_tokens over 2 or more" in str(flat)


def test_a_summary_column_is_drawn_as_before(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"budget": budget, "penalty": penalty, "seed": seed, "state": "done",
             "regret": budget / 10 + penalty + rng.normal(0, 0.1)}
            for budget in (2, 4, 8) for penalty in (0.01, 0.05, 0.2) for seed in range(3)]
    rows += [{"budget": 16, "penalty": 0.05, "seed": 0, "state": "pending", "regret": np.nan}]
    aggregate = pd.DataFrame(rows)
    cells = heatmap_cells(aggregate, x="penalty", y="budget", value="regret", reduce="mean", reps=REPS)
    fig = sweep_heatmap(cells)
    ax, colorbar = fig.axes
    surface = ax.images[0].get_array()
    means = aggregate.groupby(["budget", "penalty"])["regret"].mean().unstack("penalty")
    assert surface.shape == (4, 3) and np.allclose(surface[:3], means.to_numpy()[:3]) and surface.mask[3].all()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.05", "0.2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "4", "8", "16"]
    texts = [t.get_text() for t in ax.texts]
    assert texts[0].startswith(f"{means.iloc[0, 0]:.2f} [") and texts[-3:] == ["–"] * 3
    assert colorbar.get_ylabel() == "regret\nmean over seed [95% CI]" and ax.get_xlabel() == "penalty"
    assert list(cells.loc[cells["budget"] == 16, "n"]) == [0, 0, 0]
    median = heatmap_cells(aggregate, "penalty", "budget", "regret", reduce="median", reps=REPS)["value"]
    assert np.allclose(median[:9], aggregate.dropna().groupby(["budget", "penalty"])["regret"].median().to_numpy())
    assert all(path.exists() for path in save(fig, tmp_path, "surface"))
    assert error(heatmap_cells, aggregate.assign(regret=None), "penalty", "budget", "regret").field == "value"
