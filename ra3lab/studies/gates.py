"""Gates a comparison of arms must pass before it means anything, each reported with its measurement.

    execution  given the steps (``spec=steps``), the base model writes them: sampled pass@1 >= 0.9 on the held-out
               tasks, so that failures on hidden plans are planning, not typing
    learning   GRPO raises the sampled train pass rate (its mean reward) by >= 0.2 absolute from the first to the
               last steps, so that RLVR curves compare something
    thinking   the RA3 arm writes thoughts when it generates (thought rate >= 0.01 per line); otherwise RA3 is NTP
"""

from __future__ import annotations

from dataclasses import dataclass

EXECUTION_PASS_AT_1 = 0.9
LEARNING_GAIN = 0.2
LEARNING_WINDOW = 3          # steps averaged at each end of the reward curve
THINKING_RATE = 0.01


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


def learning(rewards: list[float], window: int = LEARNING_WINDOW) -> Gate:
    """The learning gate on one RLVR run's mean reward per step (``rlvr/reward_mean``, the sampled train pass
    rate): the mean of its last ``window`` steps minus that of its first ``window`` must reach LEARNING_GAIN."""
    gain = (sum(rewards[-window:]) / window - sum(rewards[:window]) / window) if len(rewards) >= 2 * window else None
    passed = gain is not None and gain >= LEARNING_GAIN
    message = ("GRPO raises the train pass rate" if passed else
               f"GRPO raised the train pass rate by {gain} < {LEARNING_GAIN} (over {len(rewards)} steps, "
               f"{window} at each end): the RLVR curves would compare nothing; give RLVR more steps (rlvr.steps), "
               "a larger group (rlvr.group_size) or an easier start")
    return Gate("learning", gain, LEARNING_GAIN, passed, message)


def thinking(ra3: dict, key: str = "thought_rate") -> Gate:
    """The thinking gate on the RA3 arm's evaluation ``ra3``: thoughts per generated line."""
    value = ra3.get(key)
    passed = value is not None and value >= THINKING_RATE
    message = ("the RA3 arm thinks when it generates" if passed else
               f"the RA3 arm's thought rate in generation is {value} < {THINKING_RATE}: it does not think, so it is "
               "NTP by another name here; lower the penalty c or raise the thought budget (estep.max_thought_tokens)")
    return Gate("thinking", value, THINKING_RATE, passed, message)
