"""Where a pipeline's code comes from: CodeWorld's programs (``env``, ``data.*``), CodeWorld-Plan's task families
(``env=codeworld_plan``), or a corpus of real code files (``corpus.*``, tasks from ``eval.tasks``). A config with a
``corpus`` block reads a corpus; otherwise its ``env`` says which world.

Each stage asks its config's source for the data it trains or evaluates on and for the keys that data depends
on (:meth:`Source.keys`), so that the same stages (:mod:`ra3lab.studies.stages`) compose ``codeworld_ra3`` and
``ra3_corpus``. Every stage draws the same data from the same config: programs by the pipeline's seed, snippets
from the same files.
"""

from __future__ import annotations

import random
import sysconfig
from functools import cached_property
from pathlib import Path
from typing import Protocol

from omegaconf import DictConfig

from ra3lab.codeworld import Program
from ra3lab.corpus import load_corpus, snippets, statement_lines
from ra3lab.errors import check, check_choice
from ra3lab.evaluation import named_tasks
from ra3lab.log import say
from ra3lab.ra3.estep import Corpus
from ra3lab.studies.common import make_env

HEADER = 2      # CodeWorld: def line + docstring are context, no thought before them
DATA = {"pretrain": ("train", 1, None), "midtrain": ("train", 2, 0.0), "heldout": ("heldout", 3, 0.0)}
TEACHER_PREFIX = "teacher_s"   # CodeWorld-Plan: teacher_s<share> comments each skill instance with that probability
HELDOUT_SHARE = 10   # a real corpus: held-out snippets come from the last 1/HELDOUT_SHARE of its files


class Source(Protocol):
    """The data of a pipeline. ``keys(part)``: the config keys the data of ``part`` (pretrain, midtrain, heldout)
    depends on; ``pretraining()``: programs (lines, with comments) for the tiny base model;
    ``midtraining()``: the comment-free corpus with where thoughts may go; ``references()``: each reference arm's
    rendering of it (``REFERENCES``: the reference arms it has); ``RL_SPLIT``: the split of the world whose tasks
    RLVR trains on; ``heldout()``: held-out snippets; ``tasks()``:
    (held-out tasks, the suffix of their metrics' names)."""

    REFERENCES: tuple[str, ...]
    RL_SPLIT: str

    def keys(self, part: str) -> list[str]: ...
    def validate(self) -> None: ...
    def pretraining(self) -> list[list[str]]: ...
    def tokenizer_lines(self) -> list[str]: ...
    def midtraining(self) -> Corpus: ...
    def references(self) -> dict[str, list[list[str]]]: ...
    def heldout(self) -> Corpus: ...
    def tasks(self) -> tuple[list[dict], str]: ...


def source_of(config: DictConfig) -> Source:
    if "corpus" in config:
        return FileCorpus(config)
    return PlanSource(config) if str(config.env.get("_target_", "")).endswith("CodeWorldPlan") else \
        CodeWorldSource(config)


class CodeWorldSource:
    """CodeWorld programs: ``data.pretrain`` with the world's comments, ``data.midtrain`` and ``data.heldout``
    without, drawn with the pipeline's seed; truth = the skills' first lines; tasks = the held-out programs'.
    RLVR trains on the train split's tasks (``RL_SPLIT``)."""

    REFERENCES: tuple[str, ...] = ("ntp", "oracle", "random")
    RL_SPLIT = "train"

    def __init__(self, config: DictConfig):
        self.config = config

    def keys(self, part: str) -> list[str]:
        return {"pretrain": ["env", "data.pretrain", "data.midtrain"], "midtrain": ["env", "data.midtrain"],
                "heldout": ["env", "data.heldout"]}[part]

    def validate(self) -> None:
        from ra3lab.studies import codeworld_ra3

        codeworld_ra3.validate_pipeline(self.config)

    def programs(self, part: str) -> list[Program]:
        split, offset, comments = DATA[part]
        world = make_env(self.config.env)
        return world.sample(self.config.data[part], split, seed=int(self.config.seed) * 10 + offset,
                            comment_fraction=comments)

    def pretraining(self) -> list[list[str]]:
        return [p.lines() for p in self.programs("pretrain")]

    def tokenizer_lines(self) -> list[str]:
        return [line for p in self.programs("pretrain") + self.programs("midtrain") for line in p.lines()]

    def midtraining(self) -> Corpus:
        return as_corpus(self.programs("midtrain"))

    def references(self) -> dict[str, list[list[str]]]:
        programs = self.programs("midtrain")
        return {"ntp": [p.lines(comments=False) for p in programs], "oracle": [p.oracle_lines() for p in programs]}

    def heldout(self) -> Corpus:
        return as_corpus(self.programs("heldout"))

    def tasks(self) -> tuple[list[dict], str]:
        return [p.task() for p in self.programs("heldout")], ""


class PlanSource(CodeWorldSource):
    """CodeWorld-Plan (:class:`~ra3lab.codeworld.CodeWorldPlan`): the base pre-trains on ``data.pretrain`` programs
    of random plans over every skill with their steps in the docstring (all of Z; an ``env.dsl_fraction`` share
    written in the skill DSL); mid-training reads
    ``data.midtrain`` comment-free programs of the train families (|D_E|, Z_eps only), prompted as ``env.spec``
    says; held-out: ``data.heldout`` programs of the held-out families, whose plans no corpus shows. RLVR trains
    on the held-out families too (``RL_SPLIT``), on other inputs than it evaluates on: their plans are what RL
    must find. Reference arms: CodeWorld's, ``dsl`` (the corpus's bodies as DSL calls: a skill-level policy) and
    ``teacher_s<share>`` (an intent comment before each skill instance with probability share; 1 is ``oracle``)."""

    REFERENCES: tuple[str, ...] = (*CodeWorldSource.REFERENCES, "dsl")    # and teacher_s<share>: :func:`offers`
    RL_SPLIT = "heldout"

    def programs(self, part: str) -> list[Program]:
        world, seed = make_env(self.config.env), int(self.config.seed) * 10 + DATA[part][1]
        size = self.config.data[part]
        return {"pretrain": lambda: world.pretraining(size, seed), "midtrain": lambda: world.corpus(size, seed),
                "heldout": lambda: world.sample(size, "heldout", seed)}[part]()

    def keys(self, part: str) -> list[str]:
        """The base model does not read the mid-training corpus: a sweep over its size |D_E| pre-trains one base."""
        return ["env", "data.pretrain"] if part == "pretrain" else super().keys(part)

    def pretraining(self) -> list[list[str]]:
        """The base model's corpus: every program with its steps in the docstring, an ``env.dsl_fraction`` share of
        them (evenly spread) written in the skill DSL, so that the base knows each skill as code and as a macro."""
        world = make_env(self.config.env)
        share = world.dsl_fraction
        return [world.dsl_lines(p) if int((i + 1) * share) > int(i * share) else p.lines()
                for i, p in enumerate(self.programs("pretrain"))]

    def tokenizer_lines(self) -> list[str]:
        return [line for lines in self.pretraining() for line in lines]

    def references(self) -> dict[str, list[list[str]]]:
        world, programs = make_env(self.config.env), self.programs("midtrain")
        found = {**super().references(), "dsl": [world.dsl_lines(p) for p in programs]}
        for name in {*self.config.get("references", ()), self.config.get("arm", "base")}:
            share = teacher_share(str(name))
            if share is not None:
                rng = random.Random(f"{name}/{self.config.seed}")
                found[str(name)] = [p.with_intents([rng.random() < share for _ in p.skills]).lines()
                                    for p in programs]
        return found

    def tasks(self) -> tuple[list[dict], str]:
        world = make_env(self.config.env)
        return [world.task(p) for p in self.programs("heldout")], ""

    def control_tasks(self) -> list[dict]:
        """The held-out tasks with their steps in the prompt (``spec=steps``): what a model writes when the plan is
        given, so that a failure on the hidden-plan tasks reads as planning, not typing."""
        world, seed = make_env(self.config.env), int(self.config.seed) * 10 + DATA["heldout"][1]
        return world.tasks(self.config.data.heldout, "heldout", seed, spec="steps")


def offers(source: Source, name: str) -> bool:
    """Whether ``source`` has a rendering of its corpus for the reference arm ``name``."""
    return name in source.REFERENCES or (isinstance(source, PlanSource) and teacher_share(name) is not None)


def reference_choices(source: Source) -> str:
    """The reference arms ``source`` offers, as an error message lists them."""
    teachers = f", {TEACHER_PREFIX}<share> (e.g. {TEACHER_PREFIX}0.5)" if isinstance(source, PlanSource) else ""
    return ", ".join(source.REFERENCES) + teachers


def teacher_share(name: str) -> float | None:
    """The share of a teacher arm's name (``teacher_s0.5`` -> 0.5); None for any other name."""
    if not name.startswith(TEACHER_PREFIX):
        return None
    try:
        share = float(name.removeprefix(TEACHER_PREFIX))
    except ValueError:
        return None
    return share if 0 <= share <= 1 else None


def as_corpus(programs: list[Program]) -> Corpus:
    """Comment-free programs as snippets: thoughts may go before body lines; truth = skill starts."""
    chunks = [program.lines(comments=False) for program in programs]
    decisions = [[t >= HEADER for t in range(len(s))] for s in chunks]
    truth = [{HEADER + b for b in program.boundaries} for program in programs]
    return Corpus(chunks, decisions, truth)


class FileCorpus:
    """Snippets of real code (``corpus.path``: JSONL, Parquet, a folder of .py files, or ``stdlib``): windows of
    ``corpus.snippet_lines`` lines with full-line comments removed, a thought allowed before any line that starts
    a statement; held-out snippets come from the last tenth of the files. Tasks: ``eval.tasks`` (humaneval or a
    HumanEval-format JSONL file), the first ``eval.limit``."""

    REFERENCES: tuple[str, ...] = ("ntp",)
    RL_SPLIT = "train"      # of the world in ``env``, when RLVR trains on no task file

    def __init__(self, config: DictConfig):
        self.config = config

    def keys(self, part: str) -> list[str]:
        return {"pretrain": ["corpus"], "midtrain": ["corpus"], "heldout": ["corpus", "eval.tasks", "eval.limit"]}[part]

    @property
    def path(self) -> Path:
        path = self.config.corpus.path
        return Path(sysconfig.get_paths()["stdlib"]) if path == "stdlib" else Path(path)

    def validate(self) -> None:
        from ra3lab.studies.midtraining import validate_method

        config = self.config
        validate_method(config)
        check(self.path.exists(), "corpus.path", config.corpus.path,
              "give a .jsonl / .parquet file or a folder of .py files (or stdlib)")
        check(config.corpus.snippet_lines >= 2, "corpus.snippet_lines", config.corpus.snippet_lines, "must be >= 2")
        for key in ("train_snippets", "heldout_snippets"):
            check(config.corpus[key] >= 1, f"corpus.{key}", config.corpus[key], "must be >= 1")
        for arm in config.references:
            check_choice("references", arm, (*self.REFERENCES, "infuse0"))
        self.tasks()                                   # a task file with missing fields fails here

    @cached_property
    def files(self) -> tuple[list[list[str]], list[list[str]]]:
        """(the training files' programs, the held-out files' programs)."""
        corpus = self.config.corpus
        programs, stats = load_corpus(self.path, field=corpus.field, max_files=corpus.max_files)
        say("corpus", f"{self.config.corpus.path}: {stats.describe()}")
        cut = max(1, len(programs) // HELDOUT_SHARE)
        return programs[:-cut], programs[-cut:]

    def pretraining(self) -> list[list[str]]:
        return snippets(self.files[0], max_lines=self.config.corpus.snippet_lines, seed=int(self.config.seed) + 1)

    def tokenizer_lines(self) -> list[str]:
        return [line for program in self.pretraining() for line in program]

    def _snippets(self, programs: list[list[str]], limit: int) -> Corpus:
        chunks = snippets(programs, max_lines=self.config.corpus.snippet_lines, drop_comments=True,
                          seed=int(self.config.seed), limit=limit)
        decisions = [[line > 0 and start for line, start in enumerate(statement_lines(chunk))] for chunk in chunks]
        return Corpus(chunks, decisions)

    def midtraining(self) -> Corpus:
        return self._snippets(self.files[0], self.config.corpus.train_snippets)

    def references(self) -> dict[str, list[list[str]]]:
        return {"ntp": self.midtraining().snippets}

    def heldout(self) -> Corpus:
        return self._snippets(self.files[1], self.config.corpus.heldout_snippets)

    def tasks(self) -> tuple[list[dict], str]:
        tasks = named_tasks(self.config.eval.tasks, "eval.tasks")
        limit = self.config.eval.limit
        name = "humaneval" if self.config.eval.tasks == "humaneval" else Path(self.config.eval.tasks).stem
        return (tasks if limit is None else tasks[:limit]), f"/{name}"
