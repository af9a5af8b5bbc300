"""Where a tuning study lives: the storage URL forms, opening them (or a clear error), the study."""

from __future__ import annotations

import fcntl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from sqlalchemy.exc import SQLAlchemyError

from ra3lab.errors import ConfigError, check
from ra3lab.execute import runs_root
from ra3lab.runs import json_safe
from ra3lab.sweep.space import Space


def tune_dir(space: str) -> Path:
    """``<runs>/tune/<space>``: the default storage, submitit's folder and tune.json."""
    return runs_root() / "tune" / space


def storage_url(space: str, url: str | None) -> str:
    """``url`` with relative file paths made absolute (workers may start elsewhere); default SQLite."""
    if url is None:
        tune_dir(space).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(tune_dir(space) / 'study.db').absolute()}"
    check(isinstance(url, str) and "://" in url, "storage", url,
          "use sqlite:///path.db, journal:///path.log or an RDB URL such as postgresql://user@host/db")
    check(not url.startswith("sqlite") or (url.startswith("sqlite:///") and ":memory:" not in url), "storage", url,
          "an in-memory SQLite database cannot be shared by workers: name a file, sqlite:///path/study.db")
    for scheme in ("sqlite:///", "journal://"):
        if url.startswith(scheme):
            path = Path(url[len(scheme):]).expanduser().absolute()
            check(path.parent.is_dir(), "storage", url,
                  f"the folder {path.parent} does not exist: create it or fix the path")
            return f"{scheme.rstrip('/')}//{path}" if scheme == "journal://" else f"sqlite:///{path}"
    return url


def shown(url: str) -> str:
    """``url`` as printed and stored in files: an RDB URL's password masked."""
    if url.startswith(("sqlite", "journal")):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return url.split("://", 1)[0] + "://***"


def claims_lock(url: str) -> Path | None:
    """The lock file that serialises writes a SQLite storage cannot serialise itself (None for others).

    SQLite has no SELECT ... FOR UPDATE, so two workers could both read a trial as WAITING and both
    move it to RUNNING, and two processes opening a new file could both create its tables; an flock on
    ``<db>.claims.lock`` beside the database makes either atomic. (An RDB server locks the row; the
    journal's ordered log lets one claim win.)"""
    return Path(f"{url[len('sqlite:///'):]}.claims.lock") if url.startswith("sqlite:///") else None


@contextmanager
def locked(path: Path | None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (nothing when None)."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage behind ``url``, opened (tables created, server reached); ConfigError if it cannot be."""
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(url[len("journal://"):]))
        except OSError as error:
            raise ConfigError("storage", url, f"cannot open the journal file: {error}") from None
    connect = ({"timeout": 60} if url.startswith("sqlite") else
               {"connect_timeout": 10} if url.startswith("postgres") else {})
    try:
        with locked(claims_lock(url)):   # two processes creating one SQLite file's tables would collide
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect} if connect else None)
    except ImportError as error:
        cause = str(error.__cause__ or error).splitlines()[0]
        raise ConfigError("storage", shown(url), f"its database driver is not installed ({cause}): pip install it, "
                          "or name an installed one (postgresql+psycopg2://...), "
                          "or omit --storage for SQLite") from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, OSError, ValueError) as error:  # bad URL, refused
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("storage", shown(url), f"cannot open it ({type(error).__name__}: {first[:300]}): "
                          "start the server or fix the URL; omit --storage for a SQLite file") from None


def open_study(space: Space, storage, worker: int = 0, create: bool = False) -> optuna.Study:
    """The study named after the space; ``create`` makes it if absent and checks that an existing one was
    made from the same definition of the space."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler, pruner = space.make_sampler(worker), space.make_pruner()
    if not create:
        return optuna.load_study(study_name=space.name, storage=storage, sampler=sampler, pruner=pruner)
    study = optuna.create_study(study_name=space.name, storage=storage, sampler=sampler, pruner=pruner,
                                direction=space.direction, load_if_exists=True)
    attrs = study.user_attrs
    if "space_hash" not in attrs:
        for key, value in {"space_hash": space.definition_hash(), "experiment": space.experiment,
                           "objective": space.objective_name(), "space": json_safe(space.raw)}.items():
            study.set_user_attr(key, value)
    elif attrs["space_hash"] != space.definition_hash() or study.direction.name.lower() != space.direction:
        raise ConfigError("space", space.name, f"the study '{space.name}' in this storage was made from another "
                          f"definition of the space ({attrs.get('space')}): restore the file, or start a new study "
                          "with another --storage (or delete the old one)")
    return study
