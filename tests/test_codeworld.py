"""CodeWorld: seeded programs that run and pass their own tests, ground-truth boundaries, prefix
sharing under the ambiguity knob, the comment rate, disjoint splits, and bad knobs refused by name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ra3lab.codeworld import SKILLS, CodeWorld, Program
from ra3lab.errors import ConfigError

ENVS_DIR = Path(__file__).resolve().parent.parent / "envs"


def passes(task: dict, solution: str | None = None) -> bool:
    """Whether ``solution`` (default: the canonical one) passes the task's tests, run in-process."""
    solution = task["canonical_solution"] if solution is None else solution
    namespace: dict = {}
    exec(task["prompt"] + solution + "\n" + task["test"], namespace)  # noqa: S102 - generated programs
    try:
        namespace["check"](namespace[task["entry_point"]])
    except AssertionError:
        return False
    return True


@pytest.fixture(scope="module")
def programs() -> list[Program]:
    return CodeWorld(n_skills=len(SKILLS), skills_per_program=(1, 5), seed=3).sample(300, seed=1)


def test_library_has_enough_skills_of_2_to_6_lines():
    assert len(SKILLS) >= 14
    assert {len(skill.template) for skill in SKILLS.values()} == {2, 3, 4, 5, 6}
    assert len({skill.own for skill in SKILLS.values()}) == len(SKILLS)
    for skill in SKILLS.values():
        compile("def f(xs, k):\n" + "\n".join(skill.render(skill.own, 1)) + "\n    return xs\n", skill.name, "exec")


def first_lines(world: CodeWorld, depth: int = 1) -> Counter:
    return Counter(tuple(lines[:depth]) for lines in world.templates.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ambiguity_controls_shared_first_lines(seed):
    full = len(SKILLS)
    shared = CodeWorld(n_skills=full, ambiguity=1.0, seed=seed)
    assert max(first_lines(shared).values()) >= 10              # the out = [] family
    assert max(first_lines(shared, depth=2).values()) >= 8      # ... and `for x in xs:` after it
    distinct = CodeWorld(n_skills=full, ambiguity=0.0, seed=seed)
    assert max(first_lines(distinct).values()) == 1
    half = CodeWorld(n_skills=full, ambiguity=0.5, seed=seed)
    assert sum(half.var[name] == SKILLS[name].shared for name in half.skills) == round(0.5 * full)
    assert 1 < max(first_lines(half).values()) < max(first_lines(shared).values())
    # ambiguity renames variables only: the same seeds draw the same programs
    assert [p.spec for p in shared.sample(20)] == [p.spec for p in distinct.sample(20)]


def test_skills_in_use_are_nested_in_n_skills():
    for n in range(2, len(SKILLS)):
        assert set(CodeWorld(n_skills=n, seed=7).skills) < set(CodeWorld(n_skills=n + 1, seed=7).skills)


def test_sampling_is_deterministic_per_seed():
    def render(world, **kwargs):
        return [(p.task(), p.source()) for p in world.sample(40, **kwargs)]
    reference = render(CodeWorld(seed=0), seed=1)
    assert render(CodeWorld(seed=0), seed=1) == reference
    assert render(CodeWorld(seed=0), seed=2) != reference
    assert render(CodeWorld(seed=5), seed=1) != reference
    assert CodeWorld(seed=0).sample(60, seed=1)[:40] == CodeWorld(seed=0).sample(40, seed=1)


def test_every_program_compiles_and_passes_its_own_tests(programs):
    for p in programs:
        for lines in (p.lines(), p.lines(comments=False, docstring=False), p.oracle_lines()):
            compile("\n".join(lines) + "\n", p.task_id, "exec")
        task = p.task()
        assert set(task) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
        assert task["prompt"].endswith('"""\n') and task["canonical_solution"].endswith("\n")
        assert 4 <= task["test"].count("assert candidate(") <= 6
        assert passes(task), task
        xs, k = p.inputs[0]
        kept = list(xs)
        assert p.run(xs, k) == p.outputs[0] and xs == kept
        assert len(set(map(repr, p.outputs))) > 1
        assert all(abs(v) <= 999 for out in p.outputs for v in (out if isinstance(out, list) else [out]))


def test_swapping_one_skill_fails_the_tests(programs):
    kinds = {reduces: [n for n, s in SKILLS.items() if s.reduces == reduces] for reduces in (False, True)}
    failed = 0
    for p in programs:
        first = SKILLS[p.skills[0]]
        same_kind = kinds[first.reduces]
        other = SKILLS[same_kind[(same_kind.index(first.name) + 1) % len(same_kind)]]
        rest = p.body[p.boundaries[1]:] if len(p.skills) > 1 else []
        mutated = other.render(other.shared, 1) + rest
        failed += not passes(p.task(), "\n".join(mutated) + "\n")
    assert failed >= 0.8 * len(programs)


def test_boundaries_and_line_skill_follow_the_skills(programs):
    for p in programs:
        assert len(p.line_skill) == len(p.body) and p.boundaries[0] == 0
        assert len(p.boundaries) == len(p.skills) == len(p.phrases)
        assert list(p.line_skill) == sorted(p.line_skill) and set(p.line_skill) == set(range(len(p.skills)))
        lengths = Counter(p.line_skill)
        ends_on_list = not SKILLS[p.skills[-1]].reduces
        assert (p.body[-1] == "    return xs") == ends_on_list
        for index, name in enumerate(p.skills):
            extra = ends_on_list and index == len(p.skills) - 1
            assert lengths[index] == len(SKILLS[name].template) + extra
        assert all(line.startswith("    ") and (len(line) - len(line.lstrip())) % 4 == 0 for line in p.body)
        assert p.header == ["def f(xs, k):", f'    """{p.spec}"""']
        steps = ", then ".join(p.phrases)
        ending = ". Return the list." if ends_on_list else ". Return the result."
        assert p.spec == steps[0].upper() + steps[1:] + ending
    assert any(line.startswith("        ") for p in programs for line in p.body)


def test_lines_per_skill_selects_the_skills_in_use():
    world = CodeWorld(n_skills=5, lines_per_skill=(2, 3), skills_per_program=(3, 3), seed=4)
    assert all(2 <= len(SKILLS[name].template) <= 3 for name in world.skills)
    for p in world.sample(30):
        spans = Counter(p.line_skill)
        assert len(p.skills) == 3 and all(2 <= spans[i] <= 4 for i in range(3))


def test_comments_sit_on_boundaries_at_the_requested_rate():
    world = CodeWorld(comment_fraction=0.3, seed=2)
    sampled = world.sample(400, seed=0)
    instances = sum(len(p.skills) for p in sampled)
    shown = sum(len(p.comments) for p in sampled)
    assert abs(shown / instances - 0.3) < 0.05
    for p in sampled:
        assert set(p.comments) <= set(p.boundaries)
        assert all(p.comments[b] == f"    # {p.phrases[p.line_skill[b]]}" for b in p.comments)
        lines = p.lines()
        assert len(lines) == 2 + len(p.body) + len(p.comments)
        assert [line for line in lines[2:] if line not in p.comments.values()] == p.body
        assert len(p.oracle_lines()) == 2 + len(p.body) + len(p.skills)
        assert p.source(comments=False) == "\n".join(p.header + p.body) + "\n"
    none = world.sample(100, comment_fraction=0.0)
    every = world.sample(100, comment_fraction=1.0)
    assert all(not p.comments for p in none)
    assert all(set(p.comments) == set(p.boundaries) for p in every)
    assert [p.body for p in none] == [p.body for p in every] == [p.body for p in sampled[:100]]


def test_train_and_heldout_never_share_a_program():
    world = CodeWorld(n_skills=6, skills_per_program=(1, 3), heldout_fraction=0.3, seed=1)
    train, heldout = world.sample(300, "train"), world.sample(100, "heldout")
    assert {p.skills for p in train}.isdisjoint(p.skills for p in heldout)
    assert {p.spec for p in train}.isdisjoint(p.spec for p in heldout)
    assert all(world.split_of(p.skills) == "heldout" for p in heldout)
    assert [t["task_id"] for t in world.tasks(3, "heldout")] == [p.task_id for p in heldout[:3]]
    with pytest.raises(ConfigError) as error:
        CodeWorld(heldout_fraction=0.0).sample(1, "heldout")
    assert error.value.field == "heldout_fraction"


@pytest.mark.parametrize("field, value", [
    ("n_skills", 1), ("n_skills", len(SKILLS) + 1), ("n_skills", "4"),
    ("skills_per_program", (0, 2)), ("skills_per_program", (3, 2)), ("skills_per_program", 3),
    ("skills_per_program", (1, 2, 3)), ("lines_per_skill", (3, 2)), ("lines_per_skill", (7, 9)),
    ("lines_per_skill", (2, 3)), ("ambiguity", -0.1), ("ambiguity", 1.5), ("comment_fraction", 2),
    ("heldout_fraction", 1.0), ("heldout_fraction", -0.1), ("seed", "a"),
])
def test_bad_knobs_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        CodeWorld(**{field: value})
    assert error.value.field == field


@pytest.mark.parametrize("field, value", [("n", -1), ("split", "test"), ("seed", 1.5), ("comment_fraction", 1.5)])
def test_bad_sample_arguments_raise_config_error(field, value):
    with pytest.raises(ConfigError) as error:
        CodeWorld().sample(**{"n": 1, field: value})
    assert error.value.field == field


def test_yaml_holds_the_defaults():
    world = instantiate(OmegaConf.load(ENVS_DIR / "codeworld.yaml"))
    default = CodeWorld()
    assert isinstance(world, CodeWorld)
    assert vars(world) == vars(default)
