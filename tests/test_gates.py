"""The gates of a comparison of arms come out either way: an untrained base model fails the execution gate, two GRPO
steps fail the learning gate, and each passes on a constructed case where it must."""

from __future__ import annotations

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


def test_two_grpo_steps_fail_the_learning_gate_and_a_rising_pass_rate_passes(isolated_runs):
    from tests.test_stages import RLVR_TINY

    summary = execute("rlvr", compose_experiment("rlvr", [*UNTRAINED, *RLVR_TINY, "arm=ntp", "rlvr.steps=2"]))
    gate = gates.learning([summary["curve"]])
    assert len(summary["curve"]) == 3 and len(summary["rewards"]) == 2
    assert not gate.passed and "rlvr.steps" in gate.message                 # an untrained model learns nothing here
    assert gates.learning([[0.1, 0.2, 0.4], [0.0, 0.3, 0.25]]).passed            # +0.275 on average
    assert not gates.learning([[0.1, 0.2, 0.4], [0.2, 0.1, 0.0]]).passed         # +0.05: one seed fell back
    assert not gates.learning([[0.5]]).passed and gates.learning([[0.5]]).measured is None   # no RL step


def test_an_arm_that_writes_no_thought_fails_the_thinking_gate():
    assert not gates.thinking({"thought_rate": 0.0}).passed and "NTP" in gates.thinking({"thought_rate": 0.0}).message
    assert gates.thinking({"thought_rate": 0.12}).passed and not gates.thinking({}).passed
