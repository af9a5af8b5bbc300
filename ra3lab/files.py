"""The project's hand-written YAML files: where each kind lives, one loader that checks a file's keys
and reports every problem the same way, and each file's one-line description (``ra3lab list``).

:func:`load_file` raises ConfigError before any work, with the field

    ``<kind>``          the name is unknown, or the file is not YAML or not a mapping;
    ``<name>.<key>``    a key is unknown, missing, of the wrong type or not one of its choices.

A kind's own module names its further checks of a key the same way (``<name>.<key>``). A key set to
null counts as absent. The description of a file is its first comment line (``# @package`` aside).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ra3lab.config import names, project_root
from ra3lab.errors import ConfigError, check, check_choice


@dataclass(frozen=True)
class Kind:
    """Where one kind of file lives: ``<folder>/<name><suffix>.yaml``; ``label`` names it in errors."""

    label: str
    folder: str
    suffix: str = ""
    exclude: str = ""   # stems ending with it are another kind's files in the same folder

    def names(self) -> list[str]:
        """The names of the files of this kind, sorted."""
        return [stem.removesuffix(self.suffix) for stem in names(self.folder)
                if stem.endswith(self.suffix) and not (self.exclude and stem.endswith(self.exclude))]

    def path(self, name: str) -> Path:
        return project_root() / self.folder / f"{name}{self.suffix}.yaml"


EXPERIMENTS = Kind("experiment", "experiments")
ENVS = Kind("env", "envs")
SPACES = Kind("space", "sweeps", suffix="_space")
SWEEPS = Kind("sweep", "sweeps", exclude=SPACES.suffix)
PROFILES = Kind("profile", "slurm/profiles")
LISTED = {"experiments": EXPERIMENTS, "envs": ENVS, "sweeps": SWEEPS, "spaces": SPACES}   # what `ra3lab list` shows


@dataclass(frozen=True)
class Key:
    """One key of a file: the types it accepts (bool only where listed), what it means, whether it must
    be set, the type of its items (for a list) and its valid values (or a function returning them)."""

    types: tuple[type, ...]
    meaning: str
    required: bool = False
    items: type | None = None
    choices: Sequence | Callable[[], Sequence] | None = None

    def valid(self) -> Sequence | None:
        return self.choices() if callable(self.choices) else self.choices


def load_file(kind: Kind, name: str, keys: dict[str, Key]) -> dict:
    """The file ``name`` of ``kind`` as a dict of its keys that are set, each checked against ``keys``."""
    check_choice(kind.label, name, kind.names())
    path = kind.path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(kind.label, str(path), f"is not valid YAML: {str(error).splitlines()[0]}") from None
    raw = {} if raw is None else raw
    check(isinstance(raw, dict), kind.label, str(path), f"must be a mapping with keys {', '.join(keys)}")
    unknown = sorted(map(str, set(raw) - set(keys)))
    check(not unknown, f"{name}.{unknown[0] if unknown else ''}", "(unknown key)",
          f"a {kind.label} file has keys {', '.join(keys)}")
    values = {key: value for key, value in raw.items() if value is not None}
    for key, spec in keys.items():
        _check_key(kind, f"{name}.{key}", values.get(key), spec)
    return values


def _check_key(kind: Kind, field: str, value, key: Key) -> None:
    valid = key.valid()
    listed = f" ({', '.join(map(str, valid))})" if valid is not None else ""
    if value is None:
        check(not key.required, field, None, f"every {kind.label} file names its {field.rsplit('.', 1)[1]}: "
              f"{key.meaning}{listed}")
        return
    check(isinstance(value, key.types) and (bool in key.types or not isinstance(value, bool)), field, value,
          f"expected {' or '.join(t.__name__ for t in key.types)}: {key.meaning}")
    check(key.items is None or all(isinstance(item, key.items) for item in value), field, value,
          f"expected a list of {key.items.__name__ if key.items else ''}: {key.meaning}")
    if valid is not None:
        check_choice(field, value, list(valid))


def describe(path: Path) -> str:
    """The first line of the comment that opens the file (``# @package`` lines aside); '' if none."""
    for line in Path(path).read_text().splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            break
        text = text.lstrip("#").strip()
        if text and not text.startswith("@package"):
            return text
    return ""


def catalogue() -> dict[str, dict[str, str]]:
    """Every experiment, environment, sweep and search space: {group: {name: description}}."""
    return {group: {name: describe(kind.path(name)) for name in kind.names()} for group, kind in LISTED.items()}
