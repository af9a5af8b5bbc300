"""A CodeWorld program: a function built from skill instances, its corpus renderings and its task.

A program is ``def f(xs, k):``, a docstring that states the steps with the skills' phrases, the
body lines of its skill instances, and ``return xs`` when it ends on a list skill (that line counts
in the last instance). Where instances start (``boundaries``) is the ground truth for where a
thought should go; the corpus shows an intent comment before a seeded fraction of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from ra3lab.codeworld.skills import INDENT


@dataclass(frozen=True)
class Program:
    """One program with its ground truth.

    task_id, name: the task's id and the function's name (its entry point).
    spec: the docstring, one line: CodeWorld's names every step in order; CodeWorldPlan's follows its ``spec``.
    skills, phrases: per skill instance, the skill's name and the phrase that states its intent.
    body: code lines without comments, indented 4 spaces (8 or more inside blocks).
    line_skill: per body line, the index of its skill instance.
    comments: body index -> the comment line shown before that line in the corpus.
    inputs, outputs: the hidden tests, ``(xs, k)`` pairs and what the reference returns on them.
    """

    task_id: str
    name: str
    spec: str
    skills: tuple[str, ...]
    phrases: tuple[str, ...]
    body: list[str]
    line_skill: tuple[int, ...]
    comments: dict[int, str]
    inputs: tuple[tuple[list[int], int], ...]
    outputs: tuple[int | list[int], ...]

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Indices into ``body`` where a skill instance starts (always 0 first)."""
        return tuple(i for i, s in enumerate(self.line_skill) if i == 0 or s != self.line_skill[i - 1])

    def with_intents(self, shown: Sequence[bool]) -> Program:
        """This program with its intent comment before each skill instance ``i`` where ``shown[i]``."""
        return replace(self, comments={b: f"{INDENT}# {phrase}" for b, phrase, show
                                       in zip(self.boundaries, self.phrases, shown, strict=True) if show})

    @property
    def header(self) -> list[str]:
        """The signature line and the docstring line."""
        return [f"def {self.name}(xs, k):", f'{INDENT}"""{self.spec}"""']

    def lines(self, comments: bool = True, docstring: bool = True) -> list[str]:
        """The corpus rendering: header, then body with the corpus comments before their lines."""
        return self._render(self.comments if comments else {}, docstring)

    def oracle_lines(self, docstring: bool = True) -> list[str]:
        """The rendering with an intent comment at every true boundary (the upper reference for RA3)."""
        notes = {b: f"{INDENT}# {self.phrases[self.line_skill[b]]}" for b in self.boundaries}
        return self._render(notes, docstring)

    def source(self, comments: bool = True, docstring: bool = True) -> str:
        """``lines(comments, docstring)`` as one string ending in a newline."""
        return "\n".join(self.lines(comments, docstring)) + "\n"

    def task(self, preamble: str = "") -> dict[str, str]:
        """The program as a HumanEval-format task: the model writes the body from the prompt. ``preamble``: source
        the test code defines first (it runs after the body is defined, before the body is called)."""
        asserts = [f"{INDENT}assert candidate({xs!r}, {k!r}) == {out!r}"
                   for (xs, k), out in zip(self.inputs, self.outputs, strict=True)]
        return {
            "task_id": self.task_id,
            "prompt": "\n".join(self.header) + "\n",
            "canonical_solution": "\n".join(self.body) + "\n",
            "test": preamble + "\n".join(["def check(candidate):", *asserts]) + "\n",
            "entry_point": self.name,
        }

    def run(self, xs: list[int], k: int) -> int | list[int]:
        """What the reference program returns on ``(xs, k)``; ``xs`` is left untouched."""
        return self._function(list(xs), k)

    @cached_property
    def _function(self) -> Callable[[list[int], int], int | list[int]]:
        namespace: dict = {}
        exec(compile(self.source(comments=False), self.task_id, "exec"), namespace)  # noqa: S102 - generated here
        return namespace[self.name]

    def _render(self, notes: dict[int, str], docstring: bool) -> list[str]:
        lines = list(self.header if docstring else self.header[:1])
        for i, line in enumerate(self.body):
            if i in notes:
                lines.append(notes[i])
            lines.append(line)
        return lines
