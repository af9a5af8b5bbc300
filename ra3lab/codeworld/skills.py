"""The skill library of CodeWorld: latent intents, each a template of 2-6 code lines.

A template's lines carry their indentation relative to the function body (4 spaces per level) and
two slots: ``{v}``, the variable the skill builds, and ``{c}``, a small constant drawn per
instance. Every template binds ``{v}`` in its first line, and that is how prefix sharing is
controlled. Written with its group's shared name (``out`` for list skills, ``total`` for counts
and sums, ``best`` for extremes), a skill opens like the rest of its group: keep-even, keep-odd,
keep-greater, square, clip, add-c, absolute, dedupe and running-max all open with ``out = []`` /
``for x in xs:``; prefix-sums, differences, rotate and every-other share ``out = []``; the sorts,
reverse, swap-pairs, append-k, prepend-k and drop-last share ``out = list(xs)``; sum and the counts share
``total = 0`` / ``for x in xs:``; max and min share their first two lines. The two-line skills (a slice or a
comprehension, then ``xs = out``) state their intent in their first line whatever their name. Written with its
own name (``evens = []``), a skill states its intent in its first line.

Every template length from 2 to 4 lines has 6 list skills or more, so that a world of one length (tau) at a time
can be built for the horizon sweep (``sweeps/codeworld_plan_horizon.yaml``).

List skills read the list ``xs`` and end by rebinding it; reducers end the program with ``return``.

Stylistic variants (``line_variants``): every template line but a ``return`` has ``VARIANTS`` renderings that
do the same on the lists of integers the programs see (``out.append(x)``, ``out += [x]``,
``out.extend([x])``), so that a writer makes line-level choices within one intent.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

INDENT = "    "


@dataclass(frozen=True)
class Skill:
    """One latent intent.

    name: identifier, the ground-truth label of its instances.
    phrases: intent descriptions (paraphrases) used in comments and specs; ``{c}`` is the constant.
    template: code lines relative to the body's indentation, with slots ``{v}`` and ``{c}``.
    own: the skill's own name for ``{v}``; distinct across the library.
    shared: the group's name for ``{v}``.
    constants: the values ``{c}`` is drawn from; empty when the template has no constant.
    """

    name: str
    phrases: tuple[str, ...]
    template: tuple[str, ...]
    own: str
    shared: str
    constants: tuple[int, ...] = ()

    @property
    def reduces(self) -> bool:
        """True for a reducer: it returns a number and so ends the program."""
        return self.template[-1].startswith("return ")

    def render(self, var: str, constant: int | str | None = None) -> list[str]:
        """Body lines (indented for the function body) with ``{v}`` = ``var`` and ``{c}`` = ``constant``."""
        return [INDENT + line.format(v=var, c=constant) for line in self.template]

    def phrase(self, index: int, constant: int | None = None) -> str:
        """Paraphrase ``index`` of the intent, with the instance's constant filled in."""
        return self.phrases[index].format(c=constant)


def _skill(name: str, phrases: tuple[str, ...], own: str, shared: str, code: str,
           constants: tuple[int, ...] = ()) -> Skill:
    return Skill(name, phrases, tuple(textwrap.dedent(code).strip("\n").split("\n")), own, shared, constants)


_FILTER = """
    {{v}} = []
    for x in xs:
        if {test}:
            {{v}}.append(x)
    xs = {{v}}
"""
_MAP = """
    {{v}} = []
    for x in xs:
        {{v}}.append({value})
    xs = {{v}}
"""
_INDEXED = """
    {{v}} = []
    for i in range({indices}):
        {{v}}.append({value})
    xs = {{v}}
"""
_SORT = """
    {{v}} = list(xs)
    {{v}}.sort({args})
    xs = {{v}}
"""
_COMPREHENSION = """
    {{v}} = [{value} for x in xs{test}]
    xs = {{v}}
"""
_COUNT = """
    {{v}} = 0
    for x in xs:
        if {test}:
            {{v}} += 1
    return {{v}}
"""
_EXTREME = """
    {{v}} = xs[0] if xs else 0
    for x in xs:
        if x {op} {{v}}:
            {{v}} = x
    return {{v}}
"""

_LIBRARY = (
    _skill("keep_even", ("keep the even numbers", "drop the odd numbers"), "evens", "out",
           _FILTER.format(test="x % 2 == 0")),
    _skill("keep_odd", ("keep the odd numbers", "drop the even numbers"), "odds", "out",
           _FILTER.format(test="x % 2 == 1")),
    _skill("keep_greater", ("keep the numbers greater than k", "drop the numbers at most k"), "above", "out",
           _FILTER.format(test="x > k")),
    _skill("dedupe", ("drop duplicates keeping order", "keep the first occurrence of each number"), "uniq", "out",
           _FILTER.format(test="x not in {v}")),
    _skill("square", ("square every number", "replace every number by its square"), "squares", "out",
           _MAP.format(value="x * x")),
    _skill("clip", ("clip every number to at most k", "cap every number at k"), "capped", "out",
           _MAP.format(value="min(x, k)")),
    _skill("add_const", ("add {c} to every number", "increase every number by {c}"), "shifted", "out",
           _MAP.format(value="x + {c}"), constants=(1, 2, 3, 4, 5)),
    _skill("absolute", ("take the absolute value of every number", "drop the sign of every number"), "mags", "out",
           _MAP.format(value="abs(x)")),
    _skill("running_max", ("take the running maximum", "replace every number by the largest one so far"),
           "peaks", "out", """
        {v} = []
        for x in xs:
            if {v} and {v}[-1] > x:
                x = {v}[-1]
            {v}.append(x)
        xs = {v}
    """),
    _skill("prefix_sums", ("take the prefix sums", "replace every number by the sum up to it"), "sums", "out", """
        {v} = []
        acc = 0
        for x in xs:
            acc += x
            {v}.append(acc)
        xs = {v}
    """),
    _skill("differences", ("take the pairwise differences", "replace the list by the differences of neighbours"),
           "steps", "out", _INDEXED.format(indices="1, len(xs)", value="xs[i] - xs[i - 1]")),
    _skill("rotate", ("rotate the list left by k", "shift the list left by k places, wrapping around"), "rot", "out",
           _INDEXED.format(indices="len(xs)", value="xs[(i + k) % len(xs)]")),
    _skill("every_other", ("keep every other number, starting with the first", "keep the numbers at even positions"),
           "alt", "out", _INDEXED.format(indices="0, len(xs), 2", value="xs[i]")),
    _skill("sort_asc", ("sort ascending", "sort from smallest to largest"), "ordered", "out",
           _SORT.format(args="")),
    _skill("sort_desc", ("sort descending", "sort from largest to smallest"), "ranked", "out",
           _SORT.format(args="reverse=True")),
    _skill("reverse", ("reverse the list with two pointers", "reverse the list by swapping from both ends"),
           "flipped", "out", """
        {v} = list(xs)
        i, j = 0, len(xs) - 1
        while i < j:
            {v}[i], {v}[j] = {v}[j], {v}[i]
            i, j = i + 1, j - 1
        xs = {v}
    """),
    _skill("swap_pairs", ("swap neighbouring pairs", "swap the first two numbers, the next two, and so on"),
           "paired", "out", """
        {v} = list(xs)
        for i in range(1, len(xs), 2):
            {v}[i - 1], {v}[i] = xs[i], xs[i - 1]
        xs = {v}
    """),
    _skill("sort_abs", ("sort by absolute value", "order the numbers by their size, ignoring the sign"), "by_size",
           "out", _SORT.format(args="key=abs")),
    _skill("append_k", ("append k", "add k at the end"), "extended", "out", """
        {v} = list(xs)
        {v}.append(k)
        xs = {v}
    """),
    _skill("prepend_k", ("put k in front", "insert k at the start"), "fronted", "out", """
        {v} = list(xs)
        {v}.insert(0, k)
        xs = {v}
    """),
    _skill("drop_last", ("drop the last number", "remove the last element"), "init", "out", """
        {v} = list(xs)
        del {v}[-1:]
        xs = {v}
    """),
    _skill("double", ("double every number", "multiply every number by 2"), "doubled", "out",
           _COMPREHENSION.format(value="2 * x", test="")),
    _skill("negate", ("negate every number", "flip the sign of every number"), "negs", "out",
           _COMPREHENSION.format(value="-x", test="")),
    _skill("halve", ("halve every number, rounding down", "floor-divide every number by 2"), "halves", "out",
           _COMPREHENSION.format(value="x // 2", test="")),
    _skill("keep_positive", ("keep the positive numbers", "drop the numbers at most 0"), "pos", "out",
           _COMPREHENSION.format(value="x", test=" if x > 0")),
    _skill("drop_first", ("drop the first number", "remove the first element"), "rest", "out", """
        {v} = xs[1:]
        xs = {v}
    """),
    _skill("take_k", ("keep the first k numbers", "cut the list after k numbers"), "head", "out", """
        {v} = xs[:k]
        xs = {v}
    """),
    _skill("sum", ("sum the numbers", "add up the numbers"), "added", "total", """
        {v} = 0
        for x in xs:
            {v} += x
        return {v}
    """),
    _skill("count_equal", ("count the numbers equal to k", "count how often k occurs"), "hits", "total",
           _COUNT.format(test="x == k")),
    _skill("count_greater", ("count the numbers greater than k", "count how many numbers exceed k"), "n_above",
           "total", _COUNT.format(test="x > k")),
    _skill("count_even", ("count the even numbers", "count how many numbers are even"), "n_even", "total",
           _COUNT.format(test="x % 2 == 0")),
    _skill("length", ("take the length of the list", "count how many numbers there are"), "size", "total", """
        {v} = len(xs)
        return {v}
    """),
    _skill("max", ("take the largest number, or 0 for an empty list", "find the maximum, 0 if there is none"),
           "hi", "best", _EXTREME.format(op=">")),
    _skill("min", ("take the smallest number, or 0 for an empty list", "find the minimum, 0 if there is none"),
           "lo", "best", _EXTREME.format(op="<")),
)

SKILLS: dict[str, Skill] = {skill.name: skill for skill in _LIBRARY}


VARIANTS = 3  # renderings of every template line but a return: the line and its two rewrites below
_REWRITES = tuple((re.compile(pattern), rewrites) for pattern, rewrites in (
    (r"for (\w+) in (.+):", (r"for \1 in list(\2):", r"for \1 in [*\2]:")),
    (r"(if|while) (.+):", (r"\1 (\2):", r"\1 bool(\2):")),
    (r"(\w+)\.append\((.+)\)", (r"\1 += [\2]", r"\1.extend([\2])")),
    (r"(\w+) = \[(.+) for x in xs(.*)\]", (r"\1 = [\2 for x in list(xs)\3]", r"\1 = list(\2 for x in xs\3)")),
    (r"(\w+)\.insert\(0, (.+)\)", (r"\1[:0] = [\2]", r"\1[0:0] = [\2]")),
    (r"del (\w+)\[-1:\]", (r"\1[-1:] = []", r"del \1[len(\1) - 1:]")),
    (r"(\w+)\.sort\(key=(\w+)\)", (r"\1[:] = sorted(\1, key=\2)", r"\1.sort(key=lambda x: \2(x))")),
    (r"(\w+)\.sort\(\)", (r"\1[:] = sorted(\1)", r"\1.sort(key=None)")),
    (r"(\w+)\.sort\((.+)\)", (r"\1[:] = sorted(\1, \2)", r"\1.sort(key=None, \2)")),
    (r"(\w+) \+= (.+)", (r"\1 = \1 + \2", r"\1 = \2 + \1")),
    (r"(\w+) = \[\]", (r"\1 = list()", r"\1: list[int] = []")),
    (r"(\w+) = 0", (r"\1 = int()", r"\1: int = 0")),
    (r"(\w+) = list\((\w+)\)", (r"\1 = \2[:]", r"\1 = [*\2]")),
    (r"(\w+) = (\w+\[\w*:\w*\])", (r"\1 = list(\2)", r"\1 = [*\2]")),
    (r"(\w+) = len\((\w+)\)", (r"\1 = sum(1 for _ in \2)", r"\1 = len([*\2])")),
    (r"(\w+) = (\w+)\[-1\]", (r"\1 = \2[len(\2) - 1]", r"*_, \1 = \2")),
    (r"(\w+) = (.+) if (\w+) else (.+)", (r"\1 = \4 if not \3 else \2", r"\1 = \2 if len(\3) else \4")),
    (r"xs = (\w+)", (r"xs = list(\1)", r"xs = \1[:]")),
    (r"(\w+) = x", (r"\1 = int(x)", r"(\1) = x")),
    (r"(.+, .+) = (.+)", (r"(\1) = (\2)", r"[\1] = [\2]")),
))


def line_variants(line: str) -> tuple[str, ...]:
    """The renderings of one rendered body line, ``line`` first: ``VARIANTS`` of them, or only ``line`` for a
    ``return`` (and any line no rewrite matches). The first matching rewrite of ``_REWRITES`` applies."""
    code = line.lstrip(" ")
    indent = line[: len(line) - len(code)]
    for pattern, rewrites in _REWRITES:
        match = pattern.fullmatch(code)
        if match:
            return (line, *(indent + match.expand(rewrite) for rewrite in rewrites))
    return (line,)
