"""CodeWorld: a seeded choice of skills in use and a deterministic sampler of programs over it.

Ambiguity: a seeded ``round(ambiguity * n_skills)`` of the skills in use bind their group's shared
variable name and so open with their group's lines (see ``skills``); the rest bind their own name,
so their first line is theirs alone; the same seeds draw the same programs whatever the ambiguity,
only their names change. Splits: a stable hash of a program's skill sequence puts the
sequence in "heldout" with probability ``heldout_fraction``, so the two splits never share one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import replace

from ra3lab.codeworld.programs import Program
from ra3lab.codeworld.skills import INDENT, SKILLS
from ra3lab.errors import ConfigError, check, check_choice

SPLITS = ("train", "heldout")
MAX_DRAWS = 10_000  # skill sequences tried per program before a split is declared empty
MAX_ABS = 999  # no test output holds a number larger in magnitude


def _range(field: str, value: object, low: int) -> tuple[int, int]:
    """``value`` as an integer pair (min, max) with ``low <= min <= max``, else a ConfigError."""
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    check(len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
          and low <= pair[0] <= pair[1], field, value, f"need [min, max], integers with {low} <= min <= max")
    return pair


def checked_fraction(field: str, value: object, valid: str, upper_open: bool = False) -> float:
    """``value`` as a float in [0, 1] (or [0, 1) when ``upper_open``), else a ConfigError naming ``field``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
    check(ok and not (upper_open and value == 1), field, value, valid)
    assert isinstance(value, int | float)  # checked above
    return float(value)


class CodeWorld:
    """Programs over ``n_skills`` skills of the library; each is also a HumanEval-format task.

    n_skills: skills in use (|Z|), in [2, len(SKILLS)]; the seed picks them among those whose template
        length lies in lines_per_skill, nested in n_skills, at least one list skill.
    skills_per_program: (min, max) skill instances per program (the horizon in options), min >= 1; all
        but the last are list skills, the last may be a reducer.
    lines_per_skill: (min, max) template lines of the skills in use (tau); the library spans 2..6.
    ambiguity: in [0, 1], the fraction of skills in use that share their group's first line(s).
    comment_fraction: in [0, 1], the chance that an instance gets its intent comment in the corpus.
    heldout_fraction: in [0, 1), the share of skill sequences kept for split "heldout".
    seed: picks the skills in use and which of them share; ``sample`` takes its own seed.
    """

    def __init__(self, n_skills: int = 14, skills_per_program: Sequence[int] = (2, 4),
                 lines_per_skill: Sequence[int] = (2, 6), ambiguity: float = 1.0, comment_fraction: float = 0.2,
                 heldout_fraction: float = 0.2, seed: int = 0):
        check(isinstance(n_skills, int) and 2 <= n_skills <= len(SKILLS), "n_skills", n_skills,
              f"need an integer in [2, {len(SKILLS)}] (the library size)")
        self.skills_per_program = _range("skills_per_program", skills_per_program, 1)
        self.lines_per_skill = lo, hi = _range("lines_per_skill", lines_per_skill, 1)
        self.ambiguity = checked_fraction("ambiguity", ambiguity, "must lie in [0, 1]")
        self.comment_fraction = checked_fraction("comment_fraction", comment_fraction, "must lie in [0, 1]")
        self.heldout_fraction = checked_fraction("heldout_fraction", heldout_fraction, "must lie in [0, 1)",
                                                 upper_open=True)
        check(isinstance(seed, int), "seed", seed, "need an integer")
        self.n_skills, self.seed = n_skills, seed
        matching = [name for name, skill in SKILLS.items() if lo <= len(skill.template) <= hi]
        check(len(matching) >= n_skills, "lines_per_skill", lines_per_skill,
              f"only {len(matching)} skills have {lo} to {hi} lines, fewer than n_skills = {n_skills}")
        rng = random.Random(f"codeworld/{seed}")
        rng.shuffle(matching)
        first = next(name for name in matching if not SKILLS[name].reduces)
        chosen = set([first] + [name for name in matching if name != first][: n_skills - 1])
        self.skills = tuple(name for name in SKILLS if name in chosen)
        self.list_skills = tuple(name for name in self.skills if not SKILLS[name].reduces)
        sharing = set(rng.sample(self.skills, round(self.ambiguity * n_skills)))
        self.var = {name: SKILLS[name].shared if name in sharing else SKILLS[name].own for name in self.skills}

    @property
    def templates(self) -> dict[str, list[str]]:
        """Per skill in use, its body lines as this world writes them (constants left as ``{c}``)."""
        return {name: SKILLS[name].render(self.var[name], "{c}") for name in self.skills}

    def split_of(self, skills: Sequence[str]) -> str:
        """The split a skill sequence belongs to: a stable hash, independent of every seed."""
        digest = hashlib.sha256("|".join(skills).encode()).digest()
        return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < self.heldout_fraction else "train"

    def sample(self, n: int, split: str = "train", seed: int = 0,
               comment_fraction: float | None = None) -> list[Program]:
        """``n`` programs of ``split``, deterministic in (world seed, seed, split); a larger n extends a smaller.

        comment_fraction overrides the world's; the programs stay the same, only their comments change.
        """
        check(isinstance(n, int) and n >= 0, "n", n, "need an integer >= 0")
        check_choice("split", split, SPLITS)
        check(isinstance(seed, int), "seed", seed, "need an integer")
        fraction = self.comment_fraction if comment_fraction is None else comment_fraction
        fraction = checked_fraction("comment_fraction", fraction, "must lie in [0, 1]")
        stream = f"codeworld/{self.seed}/{seed}/{split}"
        rng, comment_rng = random.Random(stream), random.Random(stream + "/comments")
        programs = []
        for i in range(n):
            program = self._draw(rng, split, f"CodeWorld/{self.seed}/{split}/{seed}/{i}")
            programs.append(program.with_intents([comment_rng.random() < fraction for _ in program.skills]))
        return programs

    def tasks(self, n: int, split: str = "train", seed: int = 0) -> list[dict[str, str]]:
        """``sample(n, split, seed)`` as HumanEval-format task dicts."""
        return [program.task() for program in self.sample(n, split, seed)]

    def _sequence(self, rng: random.Random) -> list[str]:
        """Skill names of one program: list skills, then any skill; no skill twice in a row where avoidable."""
        length = rng.randint(*self.skills_per_program)
        names: list[str] = []
        for position in range(length):
            pool = self.list_skills if position < length - 1 else self.skills
            names.append(rng.choice([name for name in pool if not names or name != names[-1]] or pool))
        return names

    def _draw(self, rng: random.Random, split: str, task_id: str) -> Program:
        """One program of ``split`` (no comments yet) whose test outputs differ and hold numbers up to MAX_ABS."""
        for _ in range(MAX_DRAWS):
            names = self._sequence(rng)
            if self.split_of(names) == split:
                program = self._build(rng, names, task_id)
                numbers = [v for out in program.outputs for v in (out if isinstance(out, list) else [out])]
                if len({repr(out) for out in program.outputs}) > 1 and max(map(abs, numbers)) <= MAX_ABS:
                    return program
        raise ConfigError("heldout_fraction", self.heldout_fraction,
                          f"split {split!r} got no usable program in {MAX_DRAWS} draws; move it away from 0 or 1, "
                          "or allow more skills or longer programs")

    def _build(self, rng: random.Random, names: list[str], task_id: str) -> Program:
        """Render the instances, state the spec, draw 4-6 test inputs and run the reference on them."""
        body, line_skill, phrases = [], [], []
        for index, name in enumerate(names):
            skill = SKILLS[name]
            constant = rng.choice(skill.constants) if skill.constants else None
            phrases.append(skill.phrase(rng.randrange(len(skill.phrases)), constant))
            lines = skill.render(self.var[name], constant)
            body += lines
            line_skill += [index] * len(lines)
        if not SKILLS[names[-1]].reduces:
            body.append(f"{INDENT}return xs")
            line_skill.append(len(names) - 1)
        steps = ", then ".join(phrases)
        spec = steps[0].upper() + steps[1:] + (". Return the result." if SKILLS[names[-1]].reduces
                                               else ". Return the list.")
        inputs = tuple(([rng.randint(-5, 9) for _ in range(rng.randint(0, 8))], rng.randint(0, 5))
                       for _ in range(rng.randint(4, 6)))
        program = Program(task_id, "f", spec, tuple(names), tuple(phrases), body, tuple(line_skill), {}, inputs, ())
        return replace(program, outputs=tuple(program.run(xs, k) for xs, k in inputs))
