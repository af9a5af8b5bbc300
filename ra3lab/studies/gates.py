"""Gates a comparison of arms must pass before it means anything, each reported with its measurement.

    execution  given the steps (``spec=steps``), the base model writes them: sampled pass@1 >= 0.9 on the held-out
               tasks, so that failures on hidden plans are planning, not typing
    learning   GRPO raises the sampled pass rate on the families it trains on by >= 0.2 absolute from its first to
               its last evaluation, so that RLVR curves compare something
    thinking   the RA3 arm writes thoughts when it generates (thought rate >= 0.01 per line); otherwise RA3 is NTP
"""

from __future__ import annotations

from dataclasses import dataclass

EXECUTION_PASS_AT_1 = 0.9
LEARNING_GAIN = 0.2
THINKING_RATE = 0.01


@dataclass(frozen=True)
class Gate:
    """One gate: what it measures, the value (None: not measured), the threshold it must reach, and whether it
    did; ``message`` says what a failure means and what to change; ``stops``: whether a failure stops the
    comparison (thinking does not: it says that RA3 is NTP by another name)."""

    name: str
    measured: float | None
    threshold: float
    passed: bool
    message: str
    stops: bool = True


def execution(base: dict, key: str = "pass@1/steps") -> Gate:
    """The execution gate on the base arm's evaluation ``base`` (the evaluate stage's metrics)."""
    value = base.get(key)
    passed = value is not None and value >= EXECUTION_PASS_AT_1
    message = ("the base model writes the skills when the steps are given" if passed else
               f"the base model's sampled pass@1 with the steps given is {value} < {EXECUTION_PASS_AT_1}: it cannot "
               "write the skills yet, so a failure with hidden plans would measure typing, not planning; "
               "pre-train longer (pretrain.steps) or on more programs (data.pretrain)")
    return Gate("execution", value, EXECUTION_PASS_AT_1, passed, message)


def learning(curves: list[list[float]]) -> Gate:
    """The learning gate on the RLVR runs of one arm (NTP): per seed, its sampled pass rate on the families RL
    trains on, at each evaluation (fresh inputs, the evaluation's temperature; the first before any step). The
    mean over seeds of the last evaluation less that of the first must reach LEARNING_GAIN."""
    usable = [curve for curve in curves if len(curve) >= 2]
    gain = (sum(c[-1] for c in usable) - sum(c[0] for c in usable)) / len(usable) if usable else None
    passed = gain is not None and gain >= LEARNING_GAIN
    message = ("GRPO raises the pass rate on the families it trains on" if passed else
               f"GRPO raised the pass rate on the families it trains on by {gain} < {LEARNING_GAIN} (mean over "
               f"{len(usable)} seeds, last evaluation less the first): the RLVR curves would compare nothing; give "
               "RLVR more steps (rlvr.steps), a larger group (rlvr.group_size) or an easier start")
    return Gate("learning", gain, LEARNING_GAIN, passed, message)


def thinking(ra3: dict, key: str = "thought_rate") -> Gate:
    """The thinking gate on the RA3 arm's evaluation ``ra3``: thoughts per generated line."""
    value = ra3.get(key)
    passed = value is not None and value >= THINKING_RATE
    message = ("the RA3 arm thinks when it generates" if passed else
               f"the RA3 arm's thought rate in generation is {value} < {THINKING_RATE}: it does not think, so it is "
               "NTP by another name here; lower the penalty c or raise the thought budget (estep.max_thought_tokens)")
    return Gate("thinking", value, THINKING_RATE, passed, message, stops=False)
