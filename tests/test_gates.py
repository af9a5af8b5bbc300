"""The gates of a comparison of arms come out either way: an untrained base model fails the execution gate."""

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
