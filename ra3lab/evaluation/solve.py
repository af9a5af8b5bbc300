"""How many of a model's sampled completions of each task pass its hidden tests: the one loop behind
pass@k in the studies and held-out pass@1 during RLVR."""

from __future__ import annotations

import numpy as np

from ra3lab.evaluation.pool import Limits, SandboxPool


def solved(model, tokenizer, tasks: list[dict], pool: SandboxPool, max_new_tokens: int, n: int = 1,
           temperature: float = 0.0, seed: int = 0, limits: Limits | None = None, batch_size: int = 16) -> np.ndarray:
    """int ndarray[tasks]: of ``n`` completions per task (greedy at temperature 0), how many pass.

    Completions come from :class:`~ra3lab.lm.HFGenerator` in batches of ``batch_size`` prompts, seeded
    per batch; the model is evaluated in eval mode and left in the mode it was in."""
    from ra3lab.lm import HFGenerator

    training = model.training
    model.eval()
    generator = HFGenerator(model, tokenizer)
    prompts = [task["prompt"] for task in tasks for _ in range(n)]
    completions = []
    for begin in range(0, len(prompts), batch_size):
        completions += generator.complete(prompts[begin:begin + batch_size], max_new_tokens=max_new_tokens,
                                          temperature=temperature, seed=seed + begin)
    model.train(training)
    verdicts = pool.check([task for task in tasks for _ in range(n)], completions, limits or Limits())
    return np.array([v.passed for v in verdicts], dtype=int).reshape(len(tasks), n).sum(1)
