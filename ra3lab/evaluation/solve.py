"""Held-out tasks solved by a model free to think as it writes: the one evaluation behind every pass rate of the
studies and of RLVR.

Each task gets ``n`` sampled completions (or one greedy or decision-greedy completion, see
:mod:`ra3lab.lm.generate`), each within a token budget, verified in the sandbox. Next to pass@k (the unbiased
estimator) the evaluation reports how the model thought: the thought rate at line starts (comment lines per
code line written), the mean thought length in tokens, the truncation rate (completions whose budget ran out
before the body ended; they fail their tests), and the pass rates of completions with and without a thought.

Budgets derive from the task unless ``max_new_tokens`` is set: the tokens of the reference body, plus per
reference line room for a thought of L_z = ``thought_tokens`` tokens before it (L_z + its newline + its indent's
tokens, at least L_z + 2), plus ``END_TOKENS`` for the token that closes the body; so a model that writes a
thought of L_z tokens before every line still fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ra3lab.errors import check
from ra3lab.evaluation.passk import pass_at_k
from ra3lab.evaluation.pool import Limits, SandboxPool
from ra3lab.lm.codec import LineCodec
from ra3lab.lm.generate import Completion, Generator, HFGenerator, check_decoding

END_TOKENS = 4          # budget for the token(s) that end a body (a newline, an unindented line)
TRUNCATION_LIMIT = 0.05     # a larger truncation rate is a warning: the budget may decide the pass rate


@dataclass(frozen=True)
class EvalConfig:
    """How held-out tasks are decoded and scored; a bad value raises ConfigError (fields ``eval.<name>``)."""

    decoding: str = "sample"            # sample, greedy or decision_greedy
    n: int = 8                          # completions per task when sampling (greedy modes write one)
    temperature: float = 0.8            # sampling temperature, > 0
    k: tuple[int, ...] = (1, 5)         # pass@k reported for each k <= the completions per task
    max_new_tokens: int | None = None   # one budget for every task; None derives it per task (module docstring)
    thought_tokens: int = 12            # L_z in the derived budget
    seed: int = 0                       # sampling seed

    def __post_init__(self):
        check_decoding(self.decoding, self.temperature)
        check(isinstance(self.n, int) and self.n >= 1, "eval.n", self.n, "must be an integer >= 1")
        ks = tuple(self.k) if not isinstance(self.k, int) else (self.k,)
        object.__setattr__(self, "k", ks)
        check(len(ks) >= 1 and all(isinstance(k, int) and k >= 1 for k in ks), "eval.k", list(ks),
              "give integers >= 1")
        check(self.decoding != "sample" or max(ks) <= self.n, "eval.n", self.n,
              f"must be >= every k in eval.k = {list(ks)}: the unbiased pass@k needs n >= k samples")
        check(self.max_new_tokens is None or (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1),
              "eval.max_new_tokens", self.max_new_tokens, "must be an integer >= 1, or null to derive it per task")
        check(isinstance(self.thought_tokens, int) and self.thought_tokens >= 0, "eval.thought_tokens",
              self.thought_tokens, "must be an integer >= 0")

    @property
    def samples(self) -> int:
        """Completions per task: n when sampling, 1 for the greedy decodings."""
        return self.n if self.decoding == "sample" else 1

    @property
    def ks(self) -> tuple[int, ...]:
        """The k of pass@k this evaluation can report."""
        return tuple(k for k in self.k if k <= self.samples) or (1,)


def budget(codec: LineCodec, task: dict, thought_tokens: int) -> int:
    """The derived token budget of one task (module docstring); ConfigError for a task without a reference."""
    check("canonical_solution" in task, "eval.max_new_tokens", None,
          f"task {task.get('task_id')!r} has no canonical_solution to derive a budget from: set eval.max_new_tokens")
    lines = task["canonical_solution"].rstrip("\n").split("\n")
    room = sum(thought_tokens + 1 + max(1, len(codec.indent_ids(line))) for line in lines)
    return len(codec.encode_lines(lines, bos=False)[0]) + room + END_TOKENS


@dataclass
class Thinking:
    """Per completion: comment lines written, code lines written, and the thoughts' tokens (content, no newline)."""

    thoughts: int
    code_lines: int
    thought_tokens: int


def thinking(codec: LineCodec, text: str) -> Thinking:
    """How a completion thought: its ``#`` lines are thoughts, its other non-blank lines code."""
    lines = [line for line in text.split("\n") if line.strip()]
    thoughts = [line for line in lines if line.lstrip().startswith("#")]
    return Thinking(len(thoughts), len(lines) - len(thoughts),
                    sum(len(codec.content_ids(line)) - 1 for line in thoughts))


@dataclass
class Evaluation:
    """Arrays[tasks, samples] of one evaluation: ``passed``, ``truncated``, ``thoughts``, ``code_lines``,
    ``thought_tokens``, ``texts`` (the completions, str); ``budgets``: int[tasks]; ``ks``: the k of pass@k."""

    passed: np.ndarray
    truncated: np.ndarray
    thoughts: np.ndarray
    code_lines: np.ndarray
    thought_tokens: np.ndarray
    budgets: np.ndarray
    ks: tuple[int, ...]
    texts: np.ndarray

    def summary(self) -> dict[str, float | None]:
        """``pass@<k>``, ``thought_rate``, ``thought_length``, ``truncation_rate``, ``thinking_fraction`` (share of
        completions with a thought), ``pass_with_thought`` / ``pass_without_thought`` (None where no completion
        falls in the group) and ``budget_mean``."""
        tasks, samples = self.passed.shape
        correct = self.passed.sum(1)
        with_thought = self.thoughts > 0

        def rate(mask: np.ndarray) -> float | None:
            return float(self.passed[mask].mean()) if mask.any() else None

        return {**{f"pass@{k}": float(pass_at_k(np.full(tasks, samples), correct, k).mean()) for k in self.ks},
                "thought_rate": float(self.thoughts.sum() / max(self.code_lines.sum(), 1)),
                "thought_length": (float(self.thought_tokens.sum() / self.thoughts.sum()) if self.thoughts.any()
                                   else 0.0),
                "truncation_rate": float(self.truncated.mean()),
                "thinking_fraction": float(with_thought.mean()),
                "pass_with_thought": rate(with_thought), "pass_without_thought": rate(~with_thought),
                "budget_mean": float(self.budgets.mean())}


def evaluate(model, tokenizer, tasks: list[dict], pool: SandboxPool, config: EvalConfig,
             limits: Limits | None = None, batch_size: int = 16, generator: Generator | None = None) -> Evaluation:
    """Complete and verify every task ``config.samples`` times (batches of ``batch_size`` prompts, seeded per
    batch); the model is evaluated in eval mode and left in the mode it was in. ``generator``: the model's
    completions (:func:`~ra3lab.lm.generate.generator_for`); default, and always for ``decision_greedy`` (a
    choice per step, which only HF generate offers), an :class:`~ra3lab.lm.HFGenerator` over ``model``."""
    training = model.training
    model.eval()
    if generator is None or config.decoding == "decision_greedy":
        generator = HFGenerator(model, tokenizer)
    codec = generator.codec
    budgets = np.array([config.max_new_tokens or budget(codec, task, config.thought_tokens) for task in tasks])
    rows = [(task, int(b)) for task, b in zip(tasks, budgets) for _ in range(config.samples)]
    completions: list[Completion] = []
    for begin in range(0, len(rows), batch_size):
        part = rows[begin:begin + batch_size]
        completions += generator.generate([task["prompt"] for task, _ in part], [b for _, b in part],
                                          config.decoding, config.temperature, seed=config.seed + begin)
    model.train(training)
    verdicts = pool.check([task for task, _ in rows], [c.text for c in completions], limits or Limits())
    ways = [thinking(codec, c.text) for c in completions]
    shape = (len(tasks), config.samples)

    def grid(values) -> np.ndarray:
        return np.array(values).reshape(shape)

    return Evaluation(grid([v.passed for v in verdicts]), grid([c.truncated for c in completions]),
                      grid([w.thoughts for w in ways]), grid([w.code_lines for w in ways]),
                      grid([w.thought_tokens for w in ways]), budgets, config.ks,
                      np.array([c.text for c in completions], dtype=object).reshape(shape))
