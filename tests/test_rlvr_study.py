"""The RLVR study end to end at a tiny scale: mid-training runs first when missing, GRPO from every
init and seed, sampled held-out evaluations with their thought and truncation rates, and a summary with
per-init convergence statistics and warnings; bad values refused before any work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.studies.codeworld_rlvr import truncation_warnings
from tests.test_midtraining import CODEWORLD

RLVR = ["seeds=[0,1]", "tasks.train=8", "tasks.heldout=4", "rlvr.steps=2", "rlvr.group_size=2",
        "rlvr.prompts_per_step=2", "rlvr.max_new_tokens=24", "rlvr.eval_every=1", "rlvr.save_every=1",
        "rlvr.timeout_s=2.0", "eval.n=2", "reps=200", "threshold=0.2"]     # held-out budgets stay derived
MEASURES = ("auc", "steps_to_threshold", "final")


def tiny_rlvr(*overrides):
    config = compose_experiment("codeworld_rlvr", [*RLVR, *overrides])
    OmegaConf.update(config, "midtraining.overrides", [o for o in CODEWORLD if not o.startswith("references")]
                     + ["references=[ntp]"])
    return config


def test_rlvr_from_each_init_reports_convergence_with_intervals(isolated_runs):
    summary = execute("codeworld_rlvr", tiny_rlvr())
    assert set(summary["inits"]) == {"base", "ntp", "ra3_c0.05"}
    curves = pd.read_csv(summary["curves"])
    assert list(curves.columns) == ["init", "seed", "task_set", "step", "value", "thought_rate", "truncation_rate"]
    assert set(curves["step"]) == {0, 1, 2} and len(curves) == 3 * 2 * 3
    final = curves[curves["step"] == 2].groupby("init")
    for init, row in summary["inits"].items():
        assert row["final_low"] <= row["final"] <= row["final_high"] and row["seeds"] == 2
        assert row["auc_low"] <= row["auc"] <= row["auc_high"]
        assert all(row[f"{measure}_mdd"] is None or row[f"{measure}_mdd"] >= 0 for measure in MEASURES)
        assert row["final_mdd"] is not None
        # the rates at the last evaluation, averaged over seeds, as curves.csv holds them
        for rate in ("thought_rate", "truncation_rate"):
            assert math.isclose(row[rate], final[rate].mean()[init]), (init, rate)
    # each point is one evaluation that train_rlvr logged (TRL's trainer state keeps the log)
    rlvr_dir = isolated_runs / OmegaConf.load(Path(summary["run_dir"]) / "config.yaml").upstream["ra3_c0.05_seed1"]
    state = json.loads((rlvr_dir / "rlvr" / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [row for row in state["log_history"] if "eval/pass@1/heldout" in row]
    points = curves[(curves["init"] == "ra3_c0.05") & (curves["seed"] == 1)].sort_values("step")
    for column, key in (("value", "pass@1"), ("thought_rate", "thought_rate"), ("truncation_rate", "truncation_rate")):
        assert points[column].tolist() == pytest.approx([row[f"eval/{key}/heldout"] for row in logged]), column
    worst = curves.groupby("init")["truncation_rate"].max()
    assert sorted(line.split(":")[0] for line in summary["warnings"]) == sorted(worst.index[worst > 0.05])
    assert summary["probability_of_improvement"]["x"] == "ra3_c0.05"
    assert all(Path(path).exists() for path in summary["figures"])
    assert (rlvr_dir / "rlvr" / "final" / "config.json").exists()


def test_an_init_that_is_no_arm_is_refused():
    with pytest.raises(ConfigError, match="inits"):
        execute("codeworld_rlvr", tiny_rlvr("inits=[base,teacher]"))


def test_a_threshold_outside_the_unit_interval_is_refused():
    with pytest.raises(ConfigError, match="threshold"):
        execute("codeworld_rlvr", tiny_rlvr("threshold=1.5"))


def test_a_task_file_with_missing_fields_is_refused_before_training(tmp_path):
    broken = tmp_path / "tasks.jsonl"
    broken.write_text('{"task_id": "t/0", "prompt": "def f():\\n"}\n')
    with pytest.raises(ConfigError, match="entry_point|test"):
        execute("codeworld_rlvr", tiny_rlvr(f"tasks.train_file={broken}"))


def test_a_task_file_without_reference_bodies_needs_a_fixed_budget(tmp_path):
    bare = tmp_path / "tasks.jsonl"
    bare.write_text(json.dumps({"task_id": "t/0", "prompt": "def f(x):\n", "entry_point": "f",
                                "test": "def check(candidate):\n    assert candidate(1) == 1\n"}) + "\n")
    with pytest.raises(ConfigError) as error:      # the default rlvr.max_new_tokens: null derives budgets
        execute("codeworld_rlvr", tiny_rlvr(f"tasks.train_file={bare}", "rlvr.max_new_tokens=null"))
    assert error.value.field == "tasks.train_file[0].canonical_solution"
    with pytest.raises(ConfigError) as error:
        execute("codeworld_rlvr", tiny_rlvr(f"tasks.heldout_file={bare}"))
    assert error.value.field == "tasks.heldout_file[0].canonical_solution"


@pytest.mark.parametrize("overrides, field", [(["eval.n=4", "eval.k=[1,5]"], "eval.n"),
                                              (["eval.temperature=0.0"], "eval.temperature"),
                                              (["eval.decoding=beam"], "eval.decoding"),
                                              (["eval.max_new_tokens=0"], "eval.max_new_tokens")])
def test_bad_eval_values_are_refused_before_any_work(overrides, field, isolated_runs):
    with pytest.raises(ConfigError) as error:
        execute("codeworld_rlvr", tiny_rlvr(*overrides))
    assert error.value.field == field
    assert not isolated_runs.exists()       # not even the mid-training run was started


def test_a_truncation_rate_above_five_percent_is_a_warning():
    table = pd.DataFrame({"init": ["ntp"] * 2 + ["ra3_c0.05"] * 2, "seed": [0, 1, 0, 1], "task_set": "codeworld",
                          "step": [3, 3, 3, 3], "value": 0.5, "thought_rate": 0.1,
                          "truncation_rate": [0.05, 0.0, 0.02, 0.25]})
    (line,) = truncation_warnings(table)
    assert line.startswith("ra3_c0.05: held-out truncation rate 25.0% at step 3 (seed 1)")
    assert truncation_warnings(table[table["init"] == "ntp"]) == []     # 5% itself is within the limit
