"""Gates a comparison of arms must pass before it means anything, each reported with its measurement.

    execution  given the steps (``spec=steps``), the base model writes them: sampled pass@1 >= 0.9 on the held-out
               tasks, so that failures on hidden plans are planning, not typing
"""

from __future__ import annotations

from dataclasses import dataclass

EXECUTION_PASS_AT_1 = 0.9


@dataclass(frozen=True)
class Gate:
    """One gate: what it measures, the value (None: not measured), the threshold it must reach, and whether it
    did; ``message`` says what a failure means and what to change."""

    name: str
    measured: float | None
    threshold: float
    passed: bool
    message: str


def execution(base: dict, key: str = "pass@1/steps") -> Gate:
    """The execution gate on the base arm's evaluation ``base`` (the evaluate stage's metrics)."""
    value = base.get(key)
    passed = value is not None and value >= EXECUTION_PASS_AT_1
    message = ("the base model writes the skills when the steps are given" if passed else
               f"the base model's sampled pass@1 with the steps given is {value} < {EXECUTION_PASS_AT_1}: it cannot "
               "write the skills yet, so a failure with hidden plans would measure typing, not planning; "
               "pre-train longer (pretrain.steps) or on more programs (data.pretrain)")
    return Gate("execution", value, EXECUTION_PASS_AT_1, passed, message)
