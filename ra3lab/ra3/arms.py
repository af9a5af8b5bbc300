"""The arms of the mid-training studies: what each one is, its name, and where its models are saved.

An arm's name is its key in summaries, checkpoint folders and RLVR inits: ``base`` (no mid-training), a
reference trained by next-token prediction on its own rendering of the corpus (``ntp``, ``oracle``,
``random``), ``infuse0`` (RA3's rounds with no E-step) or ``ra3_c<c>`` (RA3's EM rounds with penalty c per
thought, c written by ``:g``). In a run directory, an arm's models lie under ``checkpoints/<name>/``; those
of RA3 and infuse0 in one ``round_<k>/`` per EM round (k from 0), the others directly there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ra3lab.errors import check

RA3_PREFIX = "ra3_c"
CHECKPOINTS = "checkpoints"     # the folder of a run directory holding every arm's models
T = TypeVar("T")


def penalty(name: str) -> float | None:
    """The penalty c of an RA3 arm's name (``ra3_c0.05`` -> 0.05); None for any other name."""
    if not name.startswith(RA3_PREFIX):
        return None
    try:
        return float(name.removeprefix(RA3_PREFIX))
    except ValueError:
        return None


def round_folder(folder: Path, k: int) -> Path:
    """Where EM round k (from 0) of an arm whose models lie in ``folder`` is saved."""
    return Path(folder) / f"round_{k}"


@dataclass(frozen=True)
class Arm:
    """One arm: its ``name``, its ``kind`` (``base``, ``reference``, ``infuse0`` or ``ra3``) and, for RA3, its
    penalty ``c`` per thought."""

    name: str
    kind: str
    c: float | None = None

    @classmethod
    def ra3(cls, c: float) -> Arm:
        """RA3 with penalty ``c`` per thought."""
        return cls(f"{RA3_PREFIX}{c:g}", "ra3", float(c))

    @classmethod
    def parse(cls, name: str, field: str = "arm") -> Arm:
        """The arm named ``name``; ConfigError (naming ``field``) for an RA3 name without a number."""
        c = penalty(name)
        if c is not None:
            return cls.ra3(c)
        check(not name.startswith(RA3_PREFIX), field, name, f"an RA3 arm is named {RA3_PREFIX}<c>, e.g. "
              f"{RA3_PREFIX}0.05")
        return cls(name, name if name in ("base", "infuse0") else "reference")

    @property
    def em_rounds(self) -> bool:
        """Whether the arm is trained in EM rounds, each saved in its own folder (RA3 and infuse0)."""
        return self.kind in ("ra3", "infuse0")

    def folder(self, run_dir: Path) -> Path:
        """The folder of the arm's models in the run directory ``run_dir``."""
        return Path(run_dir) / CHECKPOINTS / self.name

    def model_dir(self, run_dir: Path, rounds: int) -> Path:
        """The save_pretrained directory of the arm's final model in ``run_dir``, for a study of ``rounds`` EM
        rounds: its last round's for RA3 and infuse0."""
        return round_folder(self.folder(run_dir), rounds - 1) if self.em_rounds else self.folder(run_dir)

    def __str__(self) -> str:
        return self.name


BASE = Arm("base", "base")
INFUSE0 = Arm("infuse0", "infuse0")


def ra3_by_penalty(rows: Mapping[str, T]) -> list[tuple[float, T]]:
    """``(c, row)`` of every RA3 arm of ``rows`` (arm name -> anything), in increasing c."""
    return sorted(((c, row) for name, row in rows.items() if (c := penalty(name)) is not None),
                  key=lambda item: item[0])
