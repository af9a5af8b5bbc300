"""CodeWorld-Plan: task families whose plan, a sequence of skills, the prompt never states.

A family is one plan of H skills; its programs all compute the plan's function and differ in their inputs (the
examples a prompt shows, the hidden tests) and in their lines: each line is one of ``variants`` stylistic
renderings (``skills.line_variants``), so that line-level choices outnumber skill-level ones. The prompt
(``spec``) is ``io``: the signature and input/output examples; ``goal``: the family's opaque name and what it
returns; or ``steps``: the steps in order, as CodeWorld's docstrings (the control).

The skills in use Z are CodeWorld's for the same knobs. The train families, drawn first, bring in
``family_skills`` of them (Z_eps) and the held-out families (a ``round(heldout_fraction * n_families)``) use only
those, so that the mid-training corpus (comment-free programs of the train families) reveals exactly Z_eps.
Families never share a behaviour on fixed probe inputs, and no family is constant there, leaves the number range,
or behaves as a part of its plan (some of its steps, in order: reverse, square, reverse is square): every step
matters. A skill's constant is fixed per world, so its name alone fixes its code: the skill DSL writes a body as
one call per step (``xs = skill_<name>(xs, k)``), a pure skill-level policy, and every task's test code defines
those macros (``dsl_library``), so that a DSL body passes the tests its plan's code passes.

Theory: n_skills = |Z|, family_skills = |Z_eps|, skills_per_program = H (decisions per episode at skill level),
lines_per_skill = tau (template lines per skill; about H x tau primitive decisions), ambiguity = how long an
intent stays latent in the code (shared first lines), the corpus size = |D_E| and ``sigma(corpus)`` = sigma.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from ra3lab.codeworld.programs import Program
from ra3lab.codeworld.skills import INDENT, SKILLS, VARIANTS, line_variants
from ra3lab.codeworld.world import MAX_ABS, MAX_DRAWS, SPLITS, CodeWorld, checked_fraction
from ra3lab.errors import ConfigError, check, check_choice

SPECS = ("io", "goal", "steps")
MAX_EXAMPLES = 8
EXAMPLE_LENGTH = 3  # shortest list an example shows
RESTARTS = 20  # draws of the family skills before n_families is declared out of reach
RETURN_LIST = f"{INDENT}return xs"
DSL_PREFIX = "skill_"  # a DSL line calls skill_<name>: no skill shadows a builtin (sum, max ...)
_ADJECTIVES = ("amber", "brisk", "coral", "dusky", "ember", "frosty", "gusty", "hazel", "ivory", "jolly", "lunar",
               "misty")
_NOUNS = ("badge", "cipher", "digest", "emblem", "glyph", "motif", "riddle", "sigil", "token", "totem", "vessel",
          "whorl")
GOALS = tuple(f"{adjective} {noun}" for adjective in _ADJECTIVES for noun in _NOUNS)

Inputs = tuple[list[int], int]
Output = int | list[int]


def _input(rng: random.Random, shortest: int) -> Inputs:
    """One ``(xs, k)``: 0-8 numbers in [-5, 9] (at least ``shortest``), k in [0, 5], as CodeWorld draws them."""
    return [rng.randint(-5, 9) for _ in range(rng.randint(shortest, 8))], rng.randint(0, 5)


_probe_rng = random.Random("codeworld_plan/probes")
PROBES = tuple(_input(_probe_rng, 0) for _ in range(32))  # inputs that tell families apart


def _integer(field: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is an integer in [low, high] (no upper bound if high is None), else a ConfigError."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    check(ok, field, value, f"need an integer >= {low}" if high is None else f"need an integer in [{low}, {high}]")
    assert isinstance(value, int)  # checked above
    return value


def _bounded(output: Output) -> bool:
    return all(abs(v) <= MAX_ABS for v in (output if isinstance(output, list) else [output]))


def _behaviour(function: Callable[[list[int], int], Output]) -> tuple[str, ...] | None:
    """The outputs on ``PROBES``, or None for a function unfit for a family: constant there, or out of range."""
    outputs = [function(list(xs), k) for xs, k in PROBES]
    usable = all(map(_bounded, outputs)) and len({repr(out) for out in outputs}) > 1
    return tuple(map(repr, outputs)) if usable else None


class CodeWorldPlan:
    """Task families with hidden plans over the skills of CodeWorld; every program is a HumanEval-format task.

    n_skills: skills in use (|Z|), chosen as ``CodeWorld(n_skills, lines_per_skill=..., seed=seed)`` does.
    family_skills: |Z_eps|, in [1, n_skills], the skills the families use, all of them in the train families.
    skills_per_program: H >= 1, skills per plan: all but the last are list skills, none twice in a row.
    lines_per_skill: tau: template lines of the skills in use, an integer or [min, max]; the library spans 2..6.
    ambiguity: in [0, 1], the fraction of skills in use that share their group's first line(s).
    variants: in [1, VARIANTS], renderings each line is drawn from (1: every program writes its skills alike).
    spec: what a prompt states: "io" (input/output examples), "goal" (an opaque goal) or "steps" (the plan).
    n_families: families, train and held-out together, at most len(GOALS) and the plans available.
    examples: in [1, MAX_EXAMPLES], input/output examples in an "io" prompt (lists of >= 3 numbers).
    heldout_fraction: in [0, 1), the share of families kept for split "heldout"; one train family at least.
    max_lines: the longest body the generation budget allows; H x max(lines_per_skill) + 1 must fit.
    comment_fraction: in [0, 1], the share of skill instances with their intent comment in ``pretraining``.
    dsl_fraction: in [0, 1], the share of a base model's corpus written in the skill DSL (the pipeline renders
        them: :class:`~ra3lab.studies.stages.sources.PlanSource`), so that the base knows the macros too.
    seed: picks Z (as CodeWorld's seed does), the constants, the families, Z_eps and the goals; ``sample`` takes
        its own seed.
    """

    def __init__(self, n_skills: int = 14, family_skills: int = 4, skills_per_program: int = 3,
                 lines_per_skill: int | Sequence[int] = (2, 6), ambiguity: float = 1.0, variants: int = 3,
                 spec: str = "io", n_families: int = 8, examples: int = 3, heldout_fraction: float = 0.25,
                 max_lines: int = 32, comment_fraction: float = 0.2, dsl_fraction: float = 0.2, seed: int = 0):
        check_choice("spec", spec, SPECS)
        self.spec = spec
        self.skills_per_program = H = _integer("skills_per_program", skills_per_program, 1)
        self.family_skills = _integer("family_skills", family_skills, 1)
        self.variants = _integer("variants", variants, 1, VARIANTS)
        self.n_families = _integer("n_families", n_families, 1, len(GOALS))
        self.examples = _integer("examples", examples, 1, MAX_EXAMPLES)
        self.max_lines = _integer("max_lines", max_lines, 1)
        self.comment_fraction = checked_fraction("comment_fraction", comment_fraction, "must lie in [0, 1]")
        self.dsl_fraction = checked_fraction("dsl_fraction", dsl_fraction, "must lie in [0, 1]")
        self.heldout_fraction = checked_fraction("heldout_fraction", heldout_fraction, "must lie in [0, 1)",
                                                 upper_open=True)
        n_train = n_families - round(self.heldout_fraction * n_families)
        check(n_train >= 1, "heldout_fraction", heldout_fraction, f"leaves no train family of {n_families}: lower it")
        self._splits = {"train": tuple(range(n_train)), "heldout": tuple(range(n_train, n_families))}
        tau = (lines_per_skill, lines_per_skill) if isinstance(lines_per_skill, int) else lines_per_skill
        world = CodeWorld(n_skills=n_skills, skills_per_program=(H, H), lines_per_skill=tau, ambiguity=ambiguity,
                          comment_fraction=0.0, heldout_fraction=0.0, seed=seed)
        self.n_skills, self.ambiguity, self.seed = n_skills, ambiguity, seed
        self.lines_per_skill, self.skills, self.list_skills = world.lines_per_skill, world.skills, world.list_skills
        self.var = world.var
        check(H * self.lines_per_skill[1] + 1 <= max_lines, "max_lines", max_lines,
              f"a body of skills_per_program x lines_per_skill[1] + 1 = {H * self.lines_per_skill[1] + 1} lines "
              "does not fit: raise max_lines, or lower skills_per_program or lines_per_skill")
        check(family_skills <= n_skills, "family_skills", family_skills, f"must be at most n_skills = {n_skills}")
        check(family_skills <= n_train * H, "family_skills", family_skills,
              f"the {n_train} train families of {H} skills use at most {n_train * H} skills: lower family_skills, "
              "or raise n_families or skills_per_program")
        lists = min(family_skills, len(self.list_skills))
        plans = family_skills if H == 1 else lists * (lists - 1) ** (H - 2) * (family_skills - 1)
        check(n_families <= plans, "n_families", n_families,
              f"at most {plans} plans of {H} skills exist over family_skills = {family_skills} skills: lower "
              "n_families, or raise family_skills or skills_per_program")
        rng = random.Random(f"codeworld_plan/{seed}")
        self.constants = {name: rng.choice(SKILLS[name].constants) for name in self.skills if SKILLS[name].constants}
        self.family, self.plans = self._families(rng, n_train)
        self.goals = tuple(rng.sample(GOALS, n_families))

    @property
    def quantities(self) -> dict[str, float]:
        """The theory's quantities of this world: |Z|, |Z_eps|, H, and tau as the family skills' mean lines."""
        tau = float(np.mean([len(SKILLS[name].template) for name in self.family]))
        return {"Z": self.n_skills, "Z_eps": self.family_skills, "H": self.skills_per_program, "tau": tau}

    def families(self, split: str) -> tuple[int, ...]:
        """The families (indices into ``plans``) of ``split``: train families first, then held-out ones."""
        check_choice("split", split, SPLITS)
        return self._splits[split]

    def family_of(self, program: Program) -> int:
        """The family of one of this world's programs (its index into ``plans``)."""
        check(program.skills in self.plans, "program", program.task_id, "is not a program of this world's families")
        return self.plans.index(program.skills)

    def sample(self, n: int, split: str = "train", seed: int = 0, spec: str | None = None) -> list[Program]:
        """``n`` programs of ``split``, families in turn, deterministic in (world seed, seed, split).

        A larger n extends a smaller; spec overrides the world's, and the programs stay the same (only their
        docstrings change): ``spec="steps"`` gives the control of the same tasks.
        """
        check(isinstance(seed, int), "seed", seed, "need an integer")
        return self._programs(n, split, f"{split}/{seed}", spec)

    def corpus(self, n: int, seed: int = 0) -> list[Program]:
        """The mid-training corpus: ``n`` programs of the train families, never sharing a stream with ``sample``.

        They carry no comments (``comments`` is empty); their docstrings follow ``spec``, and a corpus without
        them is ``[p.lines(docstring=False) for p in world.corpus(n)]``.
        """
        check(isinstance(seed, int), "seed", seed, "need an integer")
        return self._programs(n, "train", f"corpus/{seed}", None)

    def tasks(self, n: int, split: str = "train", seed: int = 0, spec: str | None = None) -> list[dict[str, str]]:
        """``sample(n, split, seed, spec)`` as HumanEval-format task dicts, their tests carrying the DSL's macros."""
        return [self.task(program) for program in self.sample(n, split, seed, spec)]

    def task(self, program: Program) -> dict[str, str]:
        """One program as a HumanEval-format task whose test code defines the DSL's macros (``dsl_library``): code
        and DSL bodies pass the same tests."""
        return program.task(preamble=self.dsl_library)

    def skill_counts(self, programs: Sequence[Program]) -> np.ndarray:
        """(len(programs), n_skills) int64: how often each skill in use (``skills`` order) occurs per program."""
        return np.array([[p.skills.count(name) for name in self.skills] for p in programs], dtype=np.int64
                        ).reshape(len(programs), len(self.skills))

    def sigma(self, programs: Sequence[Program]) -> float:
        """sigma: the least share of ``programs`` that use a family skill, over the family skills (Z_eps)."""
        check(len(programs) >= 1, "programs", len(programs), "need at least one program")
        needed = [self.skills.index(name) for name in self.family]
        return float((self.skill_counts(programs)[:, needed] >= 1).mean(0).min())

    @staticmethod
    def dsl(plan: Sequence[str]) -> list[str]:
        """The skill-DSL body of a plan: one call ``xs = skill_<name>(xs, k)`` per step (a final reducer's call is
        returned), then ``return xs`` after a final list skill. Every line is one skill-level decision."""
        calls = [f"{INDENT}xs = {DSL_PREFIX}{name}(xs, k)" for name in plan]
        if SKILLS[plan[-1]].reduces:
            return [*calls[:-1], f"{INDENT}return {DSL_PREFIX}{plan[-1]}(xs, k)"]
        return [*calls, RETURN_LIST]

    def dsl_lines(self, program: Program) -> list[str]:
        """A program written in the skill DSL: its header (signature, docstring), then ``dsl`` of its plan."""
        return [*program.header, *self.dsl(program.skills)]

    @cached_property
    def dsl_library(self) -> str:
        """Python source of the macros a DSL body calls: ``skill_<name>(xs, k)`` for every skill in use, its lines
        in their first rendering with this world's constant. Every task's test code carries it, so that a DSL body
        runs as its plan's code does."""
        blocks = [[f"def {DSL_PREFIX}{name}(xs, k):", *SKILLS[name].render(self.var[name], self.constants.get(name)),
                   *([] if SKILLS[name].reduces else [RETURN_LIST])] for name in self.skills]
        return "\n".join(line for block in blocks for line in block) + "\n"

    @cached_property
    def _renderings(self) -> list[tuple[str, list[frozenset[str]]]]:
        """(skill, per line the lines a body may write there): each skill in use as code (``variants`` renderings
        per template line) and as its DSL call."""
        code = [(name, [frozenset(line_variants(line)[: self.variants])
                        for line in SKILLS[name].render(self.var[name], self.constants.get(name))])
                for name in self.skills]
        calls = [(name, [frozenset(f"{INDENT}{start} {DSL_PREFIX}{name}(xs, k)" for start in ("xs =", "return"))])
                 for name in self.skills]
        return code + calls

    def parse(self, body: Sequence[str]) -> tuple[str, ...] | None:
        """The plan a body writes: the skills in use whose renderings (code or DSL calls), one after another, make up
        its lines (blank and comment lines skipped; ``return xs`` after a final list skill), or None where no
        sequence of skills does (an incoherent body). Of several parses, the one with the fewest skills."""
        lines = [line.rstrip() for line in body if line.strip() and not line.strip().startswith("#")]
        best: dict[int, tuple[str, ...]] = {0: ()}
        for start in range(len(lines)):
            if start not in best:
                continue
            for name, rendering in self._renderings:
                end = start + len(rendering)
                if all(line in choices for line, choices in zip(lines[start:end], rendering)) and end <= len(lines):
                    plan = (*best[start], name)
                    if end not in best or len(plan) < len(best[end]):
                        best[end] = plan
        returns = bool(lines) and lines[-1].lstrip().startswith("return ")      # the last step returns its value
        done = [plan for end, plan in best.items() if plan and (
            (end == len(lines) and (SKILLS[plan[-1]].reduces or returns and DSL_PREFIX in lines[-1])) or
            (end == len(lines) - 1 and lines[-1] == RETURN_LIST))]
        return min(done, key=len) if done else None

    def _function(self, plan: Sequence[str]) -> Callable[[list[int], int], Output]:
        """The plan's reference function ``f(xs, k)``, compiled from its DSL expansion."""
        namespace: dict = {}
        source = self.dsl_library + "\n".join(["def f(xs, k):", *self.dsl(plan)]) + "\n"
        exec(compile(source, "|".join(plan), "exec"), namespace)  # noqa: S102 - generated here
        return namespace["f"]

    def _plan(self, rng: random.Random, used: list[str], room: int) -> tuple[str, ...] | None:
        """One plan: list skills, then any skill, none twice in a row. Each step brings in a skill not in ``used``
        while ``room`` new ones are left, else takes one in ``used`` (or the plan); None where none fits a step."""
        plan: list[str] = []
        for position in range(self.skills_per_program):
            kind = self.skills if position == self.skills_per_program - 1 else self.list_skills
            pool = [name for name in kind if name not in plan[-1:]]
            fresh = [name for name in pool if name not in used and name not in plan]
            old = [name for name in pool if name in used or name in plan]
            choices = fresh if fresh and len(set(plan).difference(used)) < room else old
            if not choices:
                return None
            plan.append(rng.choice(choices))
        return tuple(plan)

    def _families(self, rng: random.Random, n_train: int) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """(family skills, plans): ``n_families`` plans of distinct behaviour, none doing what a part of it (some of
        its steps, in order) does, so that every step matters. The train families, drawn first, bring in the
        family skills; the held-out ones use only those. Family skills that allow too few such plans are drawn
        again, up to RESTARTS times."""
        known: dict[tuple[str, ...], tuple[str, ...] | None] = {}

        def behaviour(plan: tuple[str, ...]) -> tuple[str, ...] | None:
            if plan not in known:
                known[plan] = _behaviour(self._function(plan))
            return known[plan]

        for _ in range(RESTARTS):
            plans: list[tuple[str, ...]] = []
            used: list[str] = []
            seen: set[tuple[str, ...] | None] = {None}
            for _ in range(MAX_DRAWS // RESTARTS):
                plan = self._plan(rng, used, self.family_skills - len(used) if len(plans) < n_train else 0)
                if plan is None:
                    continue
                parts = {behaviour(tuple(plan[i] for i in keep)) for size in range(1, len(plan))
                         for keep in itertools.combinations(range(len(plan)), size)}
                if behaviour(plan) in seen | parts:
                    continue
                plans.append(plan)
                seen.add(behaviour(plan))
                used += [name for name in dict.fromkeys(plan) if name not in used]
                if len(plans) == n_train and len(used) < self.family_skills:
                    break
                if len(plans) == self.n_families:
                    return tuple(name for name in self.skills if name in used), tuple(plans)
        raise ConfigError("n_families", self.n_families,
                          f"no draw of family_skills = {self.family_skills} skills out of {RESTARTS} gave as many "
                          "plans that behave differently and need every step: lower n_families, or raise "
                          "family_skills or skills_per_program")

    def _programs(self, n: int, split: str, stream: str, spec: str | None) -> list[Program]:
        check(isinstance(n, int) and n >= 0, "n", n, "need an integer >= 0")
        families = self.families(split)
        check(len(families) > 0 or n == 0, "heldout_fraction", self.heldout_fraction,
              f"split {split!r} has no family: raise heldout_fraction")
        spec = self.spec if spec is None else spec
        check_choice("spec", spec, SPECS)
        functions = {family: self._function(self.plans[family]) for family in families}
        rng = random.Random(f"codeworld_plan/{self.seed}/{stream}")
        style = random.Random(f"codeworld_plan/{self.seed}/{stream}/style")
        turns = [families[i % len(families)] for i in range(n)]
        return [self._build(rng, style, self.plans[family], functions[family], spec,
                            f"CodeWorldPlan/{self.seed}/{stream}/{i}", self.goals[family])
                for i, family in enumerate(turns)]

    def pretraining(self, n: int, seed: int = 0) -> list[Program]:
        """``n`` programs of random plans of H skills over every skill in use (all of Z), their steps in the
        docstring and their lines drawn from the variants: a base model's corpus, which teaches how each skill is
        written when asked for, and no family. A ``comment_fraction`` of the skill instances get their intent
        comment, as real code has a few. Plans unfit for a task (constant or out of range on the probes) are
        drawn again."""
        check(isinstance(n, int) and n >= 0, "n", n, "need an integer >= 0")
        check(isinstance(seed, int), "seed", seed, "need an integer")
        rng = random.Random(f"codeworld_plan/{self.seed}/pretraining/{seed}")
        style = random.Random(f"codeworld_plan/{self.seed}/pretraining/{seed}/style")
        comments = random.Random(f"codeworld_plan/{self.seed}/pretraining/{seed}/comments")
        programs: list[Program] = []
        for _ in range(n * MAX_DRAWS):
            if len(programs) == n:
                break
            plan = self._plan(rng, list(self.skills), 0)
            function = self._function(plan) if plan else None
            if plan and function and _behaviour(function) is not None:
                task_id = f"CodeWorldPlan/{self.seed}/pretraining/{seed}/{len(programs)}"
                program = self._build(rng, style, plan, function, "steps", task_id, None)
                programs.append(program.with_intents([comments.random() < self.comment_fraction for _ in plan]))
        return programs

    def _build(self, rng: random.Random, style: random.Random, plan: tuple[str, ...],
               function: Callable[[list[int], int], Output], spec: str, task_id: str, goal: str | None) -> Program:
        """One program of ``plan`` (its family's ``goal``): phrases and inputs from ``rng``, lines from ``style``."""
        body, line_skill, phrases = [], [], []
        for index, name in enumerate(plan):
            skill, constant = SKILLS[name], self.constants.get(name)
            phrases.append(skill.phrase(rng.randrange(len(skill.phrases)), constant))
            lines = [style.choice(line_variants(line)[: self.variants])
                     for line in skill.render(self.var[name], constant)]
            body += lines
            line_skill += [index] * len(lines)
        reduces = SKILLS[plan[-1]].reduces
        if not reduces:
            body.append(RETURN_LIST)
            line_skill.append(len(plan) - 1)
        shown, hidden = self._inputs(rng, function, plan)
        ending = ". Return the result." if reduces else ". Return the list."
        steps = ", then ".join(phrases)
        text = {"io": "Examples: " + "; ".join(f"f({xs!r}, {k!r}) == {out!r}" for (xs, k), out in shown) + ".",
                "goal": f"Compute the {goal} of xs for k{ending}",
                "steps": steps[0].upper() + steps[1:] + ending}[spec]
        return Program(task_id, "f", text, plan, tuple(phrases), body, tuple(line_skill), {},
                       tuple(inputs for inputs, _ in hidden), tuple(out for _, out in hidden))

    def _inputs(self, rng: random.Random, function: Callable[[list[int], int], Output], plan: tuple[str, ...]
                ) -> tuple[list[tuple[Inputs, Output]], list[tuple[Inputs, Output]]]:
        """(examples, hidden tests) with their outputs: in range, the tests' not all equal, nor the examples'."""
        for _ in range(MAX_DRAWS):
            examples = [_input(rng, EXAMPLE_LENGTH) for _ in range(self.examples)]
            tests = [_input(rng, 0) for _ in range(rng.randint(4, 6))]
            shown = [((xs, k), function(list(xs), k)) for xs, k in examples]
            hidden = [((xs, k), function(list(xs), k)) for xs, k in tests]
            varied = (len({repr(out) for _, out in hidden}) > 1
                      and len({repr(out) for _, out in shown}) >= min(2, self.examples))
            if varied and all(_bounded(out) for _, out in shown + hidden):
                return shown, hidden
        raise RuntimeError(f"family {plan} got no usable inputs in {MAX_DRAWS} draws")
