"""The verifiable reward of RLVR: a completion scores 1.0 when it passes its task's hidden unit tests in the sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ra3lab.errors import check
from ra3lab.evaluation import Limits, SandboxPool
from ra3lab.lm.generate import cut


def unit_test_reward(pool: SandboxPool, tasks_by_id: Mapping[str, dict], limits: Limits | None = None
                     ) -> Callable[..., list[float | None]]:
    """A reward function for TRL's ``GRPOTrainer``: ``unit_tests(prompts, completions, task_id, **kwargs)``.

    Per completion, 1.0 if the completion cut at the end of its function body passes the hidden tests of the
    task ``tasks_by_id[task_id]`` (a HumanEval-format dict) in ``pool`` under ``limits`` (default ``Limits()``),
    else 0.0. ``task_id`` is a dataset column, which TRL passes by name. Where TRL passes ``log_metric``, the
    sandbox's wall seconds for the batch are logged as ``reward_s``.
    """
    limits = Limits() if limits is None else limits

    def unit_tests(prompts: list[str], completions: list[str], task_id: list[str], log_metric=None,
                   **kwargs) -> list[float | None]:     # TRL's type: None where a reward does not apply
        unknown = sorted(set(task_id) - set(tasks_by_id))
        check(not unknown, "task_id", unknown[:3], "every row's task_id must name one of the reward's tasks")
        start = time.perf_counter()
        verdicts = pool.check([tasks_by_id[name] for name in task_id], [cut(text) for text in completions], limits)
        if log_metric is not None:
            log_metric("reward_s", time.perf_counter() - start)
        return [float(verdict.passed) for verdict in verdicts]

    return unit_tests
