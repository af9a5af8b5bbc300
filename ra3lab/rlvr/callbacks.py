"""One row of ``rlvr/`` and ``eval/`` metrics per GRPO step, from TRL's log, clocks of our own and the rollout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from transformers import TrainerCallback

# what TRL (and the Trainer under it) logs at every step -> its name here
TRL_METRICS = {
    "reward": "rlvr/reward_mean",                       # mean reward of the step's completions
    "reward_std": "rlvr/reward_std",                    # their standard deviation
    "frac_reward_zero_std": "rlvr/zero_std_fraction",   # share of prompt groups whose G rewards are all equal
    "kl": "rlvr/kl",                                    # mean per-token KL to the reference model (beta > 0) *
    "entropy": "rlvr/entropy",                          # mean per-token entropy of the policy, nats *
    "grad_norm": "rlvr/grad_norm",                      # gradient norm before clipping
    "reward_s": "rlvr/reward_s",                        # sandbox wall seconds (logged by unit_test_reward)
}   # * over the tokens in the loss, so without truncated completions; 0 when all of a step's are truncated


class StepMetrics(TrainerCallback):
    """Hands ``log(step, row)`` one row per optimizer step and keeps it in ``state.log_history``, so that
    checkpoints carry the history and a resumed run continues it.

    A row holds TRL's metrics of the step under the names of ``TRL_METRICS``, and four measured here:
    ``rlvr/generation_s``, wall seconds inside :meth:`generating` (the rollout enters it); ``rlvr/update_s``,
    the rest of the step (from ``on_step_begin`` to ``on_step_end``) less the sandbox's ``rlvr/reward_s``: log
    probabilities, loss, backward and optimizer step; from what the rollout reports to :meth:`rolled_out`,
    ``rlvr/completion_length``, mean tokens per completion (truncated ones included: TRL's own mean counts only the
    tokens in the loss), and ``rlvr/truncated_fraction``, the share of completions whose budget ran out before the
    body ended (kept out of the loss). ``evaluate(model) -> {name: value}`` runs before the first step (its row is
    step 0), every ``eval_every`` steps and at the last; its values join that step's row.
    """

    def __init__(self, evaluate: Callable[[object], dict[str, float]], eval_every: int,
                 log: Callable[[int, dict], None] | None = None):
        self.evaluate, self.eval_every, self.log = evaluate, eval_every, log
        self.generation_s = self.step_s = self.started = 0.0
        self.lengths: list[int] = []
        self.truncated: list[bool] = []
        self.evaluated: dict[str, float] = {}

    @contextmanager
    def generating(self) -> Iterator[None]:
        """Count the wall time inside as generation of the current step."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.generation_s += time.perf_counter() - start

    def rolled_out(self, lengths: list[int], truncated: list[bool]) -> None:
        """Count a rollout of the current step: per completion, its tokens and whether it was truncated."""
        self.lengths += lengths
        self.truncated += truncated

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            row = self.evaluate(model)
            state.log_history.append({"step": 0, **row})
            self._hand(0, row)

    def on_step_begin(self, args, state, control, **kwargs):
        self.generation_s, self.started = 0.0, time.perf_counter()
        self.lengths, self.truncated = [], []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.step_s = time.perf_counter() - self.started
        if state.global_step % self.eval_every == 0 or state.global_step >= state.max_steps:
            self.evaluated = self.evaluate(model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "reward" not in logs:        # the summary logged after the last step
            return
        row = {name: logs[key] for key, name in TRL_METRICS.items() if logs.get(key) is not None}
        row["rlvr/generation_s"] = self.generation_s
        row["rlvr/update_s"] = self.step_s - self.generation_s - logs.get("reward_s", 0.0)
        row["rlvr/completion_length"] = sum(self.lengths) / len(self.lengths)
        row["rlvr/truncated_fraction"] = sum(self.truncated) / len(self.truncated)
        row.update(self.evaluated)
        self.evaluated = {}
        state.log_history[-1].update(row)
        self._hand(state.global_step, row)

    def _hand(self, step: int, row: dict) -> None:
        if self.log is not None:
            self.log(step, dict(row))
