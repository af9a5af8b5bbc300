"""The RLVR study end to end at a tiny scale: mid-training runs first when missing, GRPO from every
init and seed, and a summary with per-init convergence statistics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from tests.test_midtraining import CODEWORLD

RLVR = ["seeds=[0,1]", "tasks.train=8", "tasks.heldout=4", "rlvr.steps=2", "rlvr.group_size=2",
        "rlvr.prompts_per_step=2", "rlvr.max_new_tokens=24", "rlvr.eval_every=1", "rlvr.save_every=1",
        "rlvr.timeout_s=2.0", "reps=200", "threshold=0.2"]


def tiny_rlvr(*overrides):
    config = compose_experiment("codeworld_rlvr", [*RLVR, *overrides])
    OmegaConf.update(config, "midtraining.overrides", [o for o in CODEWORLD if not o.startswith("references")]
                     + ["references=[ntp]"])
    return config


def test_rlvr_from_each_init_reports_convergence_with_intervals():
    summary = execute("codeworld_rlvr", tiny_rlvr())
    assert set(summary["inits"]) == {"base", "ntp", "ra3_c0.05"}
    for row in summary["inits"].values():
        assert row["final_low"] <= row["final"] <= row["final_high"] and row["seeds"] == 2
        assert row["auc_low"] <= row["auc"] <= row["auc_high"]
    assert summary["probability_of_improvement"]["x"] == "ra3_c0.05"
    curves = pd.read_csv(summary["curves"])
    assert set(curves["step"]) == {0, 1, 2} and len(curves) == 3 * 2 * 3
    assert all(Path(path).exists() for path in summary["figures"])
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "rlvr" / "ra3_c0.05_seed1" / "final" / "config.json").exists()


def test_an_init_the_midtraining_study_does_not_have_is_refused():
    with pytest.raises(ConfigError, match="inits"):
        execute("codeworld_rlvr", tiny_rlvr("inits=[base,oracle]"))


def test_a_threshold_outside_the_unit_interval_is_refused():
    with pytest.raises(ConfigError, match="threshold"):
        execute("codeworld_rlvr", tiny_rlvr("threshold=1.5"))


def test_a_task_file_with_missing_fields_is_refused_before_training(tmp_path):
    broken = tmp_path / "tasks.jsonl"
    broken.write_text('{"task_id": "t/0", "prompt": "def f():\\n"}\n')
    with pytest.raises(ConfigError, match="entry_point|test"):
        execute("codeworld_rlvr", tiny_rlvr(f"tasks.train_file={broken}"))
