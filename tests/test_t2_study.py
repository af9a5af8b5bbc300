"""T2 (Theorem 3.5 as stated): the verdict machinery on constructed cases, and the study end to end."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.studies.pruning import fit_half, form_verdict, largest_failing

TINY = ["design=axes", "trials=20", "env.n_tasks=8", "max_samples=512", "reveal_samples=2000",
        "vary.n_options=[8,16,32]", "vary.n_eps=[2,4,8]", "vary.sigma=[0.25,0.5,1.0]"]
DELTA = 0.1


def synthetic_grid():
    """(|Z|, |Z_eps|, sigma) arrays of a grid, and samples needed that follow 3 |Z_eps| log(|Z|/delta) / sigma
    exactly, read off a grid 15% apart (the largest failing size 1/1.15 below)."""
    cells = np.array([(z, e, s) for z, e, s in itertools.product([8, 16, 32, 64], [2, 4, 8], [0.25, 0.5, 1.0])
                      if e <= z], dtype=float)
    n_options, n_eps, sigma = cells.T
    measured = 3 * n_eps * np.log(n_options / DELTA) / sigma
    return n_options, n_eps, sigma, measured, measured / 1.15


@pytest.mark.parametrize("seed", range(5))
def test_the_true_form_holds_on_every_held_out_half(seed):
    n_options, n_eps, sigma, measured, failing = synthetic_grid()
    fit = fit_half(len(measured), seed)
    verdict = form_verdict(measured, failing, n_eps * np.log(n_options / DELTA) / sigma, fit, 10**6)
    assert verdict["c"] == pytest.approx(3.0) and verdict["violations"] == 0 and verdict["holds"] is True
    assert verdict["tightness"] == pytest.approx(1.0)
    assert verdict["fit_cells"] + verdict["test_cells"] == len(measured)
    assert abs(verdict["fit_cells"] - verdict["test_cells"]) <= 1


def test_a_bound_without_one_over_sigma_is_violated_where_sigma_is_small():
    n_options, n_eps, sigma, measured, failing = synthetic_grid()
    verdict = form_verdict(measured, failing, n_eps * np.log(n_options / DELTA), sigma == 1.0, 10**6)
    assert verdict["c"] == pytest.approx(3.0) and verdict["holds"] is False
    assert verdict["violations"] == int((sigma < 1).sum())              # every sigma < 1 cell: 4x or 2x above c x bound


def test_a_bound_with_k_one_is_violated_where_z_eps_is_large():
    n_options, n_eps, sigma, measured, failing = synthetic_grid()
    verdict = form_verdict(measured, failing, np.log(n_options / DELTA) / sigma, n_eps == 2, 10**6)
    assert verdict["holds"] is False and verdict["violations"] == int((n_eps > 2).sum())


def test_censored_settings_violate_only_where_the_bound_is_below_the_largest_size():
    measured = np.array([10.0, 20.0, np.nan, np.nan])
    failing = np.array([8.0, 17.0, 1000.0, 1000.0])
    predicted = np.array([10.0, 20.0, 500.0, 2000.0])                 # c = 1: 500 < 1000 fails, 2000 > 1000 is open
    verdict = form_verdict(measured, failing, predicted, np.array([True, False, False, False]), 1000)
    assert verdict["c"] == 1.0 and verdict["violations"] == 1 and verdict["censored_undecided"] == 1
    assert verdict["censored_test"] == 2 and verdict["holds"] is False
    assert form_verdict(measured, failing, predicted, np.array([True, False, False, False]), 1000, tolerance=1)["holds"]
    unfit = form_verdict(measured, failing, predicted, np.array([False, False, True, True]), 1000)
    assert unfit["c"] is None and unfit["holds"] is None and "no fit setting" in unfit["note"]


def test_a_size_fails_only_when_its_upper_confidence_bound_is_below_the_target():
    sizes, success = [1, 2, 4, 8], [0.5, 0.8, 0.86, 0.95]
    assert largest_failing(sizes, success, 100, 0.9) == 2                # 86 of 100 may still be 0.9
    assert largest_failing(sizes, success, 1000, 0.9) == 4               # 860 of 1000 is not
    assert largest_failing(sizes, [0.95] * 4, 100, 0.9) == 0


def test_pruning_study_judges_each_form_per_noise_model_and_rule():
    summary = execute("t2_pruning", compose_experiment("t2_pruning", TINY))
    groups = {f"{m}/{r}" for m in ("none", "per_distractor", "budget") for r in ("observed", "frequency", "top_k")}
    assert set(summary["thm_3_5_verdicts"]) == groups == set(summary["thm_3_5_slopes"])
    assert summary["z_eps_all_exact"] and summary["z_eps_matches_needed"]
    assert summary["empty_rows_total"] > 0                               # rows that revealed nothing: counted, no crash
    rows = summary["settings"]

    def cells(model, rule):
        return {(r["n_options"], r["n_eps"], r["sigma"]): r for r in rows
                if r["noise_model"] == model and r["rule"] == rule}

    clean, noisy = cells("none", "observed"), cells("budget", "observed")
    on_z_axis = [row for key, row in clean.items() if key[1:] == (4, 0.5)]
    assert len(on_z_axis) == 3 and len({row["n_required"] for row in on_z_axis}) == 1   # |Z| cannot matter here
    slope = summary["thm_3_5_slopes"]["none/observed"]
    assert slope["n_options"]["slope"] == pytest.approx(0.0) and slope["n_options"]["predicted_full"] > 1
    on_sigma_axis = [clean[(16, 4, sigma)]["n_required"] for sigma in (0.25, 0.5, 1.0)]
    assert on_sigma_axis == sorted(on_sigma_axis, reverse=True) and on_sigma_axis[0] > 2 * on_sigma_axis[-1]
    for key, row in noisy.items():                                       # the same expert data, plus noise
        assert row["n_near_optimal"] == clean[key]["n_near_optimal"]
        assert (row["n_required"] is None) == (row["n_suboptimal"] > 0)  # keeps every revealed distractor
    for group in summary["thm_3_5_verdicts"].values():
        assert {"c", "violations", "tightness", "holds", "censored_test"} <= group["K=|Z_eps|"].keys()
    assert summary["thm_3_5_verdicts"]["budget/observed"]["K=|Z_eps|"]["holds"] is not True
    assert all(Path(path).stat().st_size > 0 for path in summary["figures"])

    measured = np.array([row["n_required"] for row in clean.values()], dtype=float)
    failing = np.array([row["n_failing"] for row in clean.values()], dtype=float)
    sigma = np.array([row["sigma"] for row in clean.values()])
    k_log = np.array([row["n_eps"] * math.log(row["n_options"] / DELTA) for row in clean.values()])
    wrong = form_verdict(measured, failing, k_log, sigma == 1.0, 512)   # the bound without 1/sigma
    assert wrong["violations"] >= int((sigma == 0.25).sum()) > 0


def test_success_that_rests_on_the_full_set_fallback_is_flagged():
    """Distractors revealed at rate 0.3 are never suboptimal here (the rarest needed decision is revealed
    at most at 0.5): a frequency threshold that drops every decision succeeds only through the fallback."""
    noisy = [*TINY, "rule=frequency", "noise_model=per_distractor", "noise=0.3"]
    dropping = execute("t2_pruning", compose_experiment("t2_pruning", [*noisy, "+rule_kwargs.threshold=0.9"]))
    assert all(row["n_suboptimal"] == 0 and row["by_fallback"] for row in dropping["settings"])
    assert dropping["cells_succeeding_by_fallback"] == len(dropping["settings"])
    keeping = execute("t2_pruning", compose_experiment("t2_pruning", [*noisy, "+rule_kwargs.threshold=0.0"]))
    assert keeping["cells_succeeding_by_fallback"] == 0


@pytest.mark.parametrize("override, field", [
    ("rule=biggest", "rule"), ("noise_model=[none,gaussian]", "noise_model"), ("noise=2", "noise"),
    ("base.n_eps=3", "base.n_eps"), ("+rule_kwargs.q=1", "rule_kwargs"), ("design=random", "design"),
    ("suboptimal_ratio=0", "suboptimal_ratio"), ("vary.sigma=[0.5,1.0]", "vary.sigma"),
    ("vary.n_eps=[2,4,0]", "vary.n_eps"),
])
def test_bad_configs_are_rejected_before_any_work(override, field, isolated_runs):
    with pytest.raises(ConfigError, match=f"^{field} = "):
        execute("t2_pruning", compose_experiment("t2_pruning", [*TINY, override]))
    assert not isolated_runs.exists()
