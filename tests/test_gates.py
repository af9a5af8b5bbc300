"""The gates of a comparison of arms come out either way: an untrained base model fails the execution gate, two GRPO
steps fail the learning gate, and each passes on a constructed case where it must."""

from __future__ import annotations

import json
from pathlib import Path

from ra3lab.config import compose_experiment
from ra3lab.execute import execute
from ra3lab.studies import gates
from ra3lab.studies.stages import as_stage
from tests.test_midtraining import CODEWORLD

UNTRAINED = [o for o in CODEWORLD if not o.startswith("pretrain.steps")] + ["pretrain.steps=1", "env=codeworld_plan"]


def test_an_untrained_base_model_fails_the_execution_gate_and_a_writing_one_passes(isolated_runs):
    config = as_stage(compose_experiment("midtrain", [*UNTRAINED, "arm=base"]), "evaluate")
    evaluation = execute("evaluate", config)["evaluation"]
    assert {"pass@1/steps", "thought_rate/steps", "truncation_rate/steps"} <= set(evaluation)
    assert evaluation["pass@1/steps"] < 0.1                      # one pre-training step writes no skill
    gate = gates.execution(evaluation)
    assert not gate.passed and gate.measured == evaluation["pass@1/steps"] and "pretrain.steps" in gate.message
    assert gates.execution({"pass@1/steps": 0.95}).passed
    assert not gates.execution({"pass@1/steps": 0.85}).passed and not gates.execution({}).passed


def test_two_grpo_steps_fail_the_learning_gate_and_a_rising_reward_passes(isolated_runs):
    from tests.test_stages import RLVR_TINY

    summary = execute("rlvr", compose_experiment("rlvr", [*UNTRAINED, *RLVR_TINY, "arm=ntp", "rlvr.steps=6"]))
    lines = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    rewards = [line["rlvr/reward_mean"] for line in lines if "rlvr/reward_mean" in line]
    assert len(rewards) == 6
    gate = gates.learning(rewards)
    assert not gate.passed and "rlvr.steps" in gate.message                 # an untrained model learns nothing here
    assert gates.learning([0.1, 0.1, 0.2, 0.3, 0.4, 0.5]).passed                        # +0.33 from start to end
    assert not gates.learning([0.1, 0.2, 0.1, 0.2, 0.2, 0.3]).passed                    # +0.1
    assert not gates.learning([0.0, 1.0]).passed and gates.learning([0.0, 1.0]).measured is None   # too short


def test_an_arm_that_writes_no_thought_fails_the_thinking_gate():
    assert not gates.thinking({"thought_rate": 0.0}).passed and "NTP" in gates.thinking({"thought_rate": 0.0}).message
    assert gates.thinking({"thought_rate": 0.12}).passed and not gates.thinking({}).passed
