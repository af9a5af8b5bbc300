"""Real code corpora: Python programs read from JSONL, Parquet or a folder of .py files.

    from ra3lab.corpus import load_corpus, snippets
    programs, stats = load_corpus("code.jsonl", field="content")    # list[list[str]], CorpusStats
    chunks = snippets(programs, max_lines=40, drop_comments=True)    # training windows, list[list[str]]

A program is a list of lines without "\\n", trailing whitespace stripped, tabs and indentation kept.
A record (a JSONL line, a Parquet row, a file) that is not UTF-8 text, is blank, does not parse as
Python or is too short is skipped and counted in :class:`CorpusStats`, never an error.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import tokenize
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path

import numpy as np

from ra3lab.errors import ConfigError, check

SOURCES = "pass a .jsonl or .parquet file, or a folder of .py files"
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass
class CorpusStats:
    """Records (lines, rows or files) read, kept, and skipped by reason."""

    read: int = 0
    kept: int = 0
    skipped_not_utf8: int = 0
    skipped_not_python: int = 0
    skipped_empty: int = 0
    skipped_too_short: int = 0

    @property
    def skipped(self) -> int:
        return self.read - self.kept

    def describe(self) -> str:
        return (f"kept {self.kept} of {self.read}; skipped {self.skipped_not_utf8} not UTF-8, "
                f"{self.skipped_not_python} not Python, {self.skipped_empty} empty, "
                f"{self.skipped_too_short} too short")


def load_corpus(path: str | Path, field: str = "content", max_files: int | None = None, min_lines: int = 3,
                max_lines: int | None = None) -> tuple[list[list[str]], CorpusStats]:
    """The programs of a corpus and what was skipped.

    ``path``: a .jsonl file (one JSON object a line, the code under ``field``), a .parquet file
    (the code in column ``field``, string or binary) or a folder whose .py files are read
    recursively in sorted path order. ``max_files`` caps the records read; programs with fewer
    than ``min_lines`` non-blank lines are skipped; ``max_lines`` keeps each program's first lines.
    Warns once with the counts when anything was skipped.
    """
    check(max_files is None or max_files >= 1, "corpus.max_files", max_files, "must be >= 1, or None for all")
    check(min_lines >= 0, "corpus.min_lines", min_lines, "must be >= 0")
    check(max_lines is None or max_lines >= 1, "corpus.max_lines", max_lines, "must be >= 1, or None for whole files")
    path = Path(path)
    stats, programs = CorpusStats(), []
    for value in islice(_records(path, field), max_files):
        stats.read += 1
        program, reason = _program(value, min_lines, max_lines)
        if program is None:
            setattr(stats, f"skipped_{reason}", getattr(stats, f"skipped_{reason}") + 1)
        else:
            stats.kept += 1
            programs.append(program)
    if not programs:
        raise ConfigError("corpus", str(path), f"no program kept ({stats.describe()}): {SOURCES} of valid Python")
    if stats.skipped:
        warnings.warn(f"corpus {path}: {stats.describe()}", stacklevel=2)
    return programs, stats


def snippets(programs: list[list[str]], max_lines: int = 40, drop_comments: bool = False, seed: int = 0,
             limit: int | None = None) -> list[list[str]]:
    """Windows of consecutive lines, at most ``max_lines`` each, in an order shuffled by ``seed``.

    A program that fits is one window; a longer one is cut before top-level statements (with the
    comments just above them), pieces still too long at blank lines, then every ``max_lines``
    lines, and consecutive pieces are packed greedily. Windows lose blank edge lines.
    ``drop_comments`` first removes full-line ``#`` comments (inline ones and ``#`` inside strings
    stay). ``limit`` keeps the first windows of the shuffled order.
    """
    check(max_lines >= 1, "max_lines", max_lines, "must be >= 1")
    check(limit is None or limit >= 0, "limit", limit, "must be >= 0, or None for all")
    windows = []
    for program in programs:
        lines = _without_comments(program) if drop_comments else list(program)
        windows += [window for window in map(_trim, _split(lines, max_lines)) if window]
    order = np.random.default_rng(seed).permutation(len(windows))[:limit]
    return [windows[i] for i in order]


# --- reading ------------------------------------------------------------------------------------

def _records(path: Path, field: str) -> Iterator[str | bytes | None]:
    """The raw text of each record, lazily, in a fixed order."""
    if not path.exists():
        raise ConfigError("corpus", str(path), f"no such file or folder: {SOURCES}")
    if path.is_dir():
        for file in _py_files(path):
            yield file.read_bytes()
    elif path.suffix == ".jsonl":
        yield from _jsonl(path, field)
    elif path.suffix == ".parquet":
        yield from _parquet(path, field)
    else:
        raise ConfigError("corpus", str(path), f"unsupported suffix {path.suffix!r}: {SOURCES}")


def _py_files(folder: Path) -> Iterator[Path]:
    """.py files under ``folder`` in sorted path order, found lazily; links to folders are not followed."""
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.is_dir(follow_symlinks=False):
            yield from _py_files(Path(entry.path))
        elif entry.name.endswith(".py") and entry.is_file():
            yield Path(entry.path)


def _jsonl(path: Path, field: str) -> Iterator[str | bytes | None]:
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield raw  # counted as not UTF-8
                continue
            except json.JSONDecodeError as error:
                raise ConfigError("corpus", str(path), f"line {number} is not JSON ({error.msg}): "
                                  "write one JSON object a line") from None
            if not isinstance(record, dict):
                raise ConfigError("corpus", str(path), f"line {number} holds a {type(record).__name__}, "
                                  "not a JSON object: write one object a line")
            if field not in record:
                raise ConfigError("corpus.field", field, f"line {number} of {path} has no such key; keys found: "
                                  f"{', '.join(record) or '(none)'}: set corpus.field to the one holding the code")
            value = record[field]
            if not isinstance(value, str | None):
                raise ConfigError("corpus.field", field, f"line {number} of {path} holds a {type(value).__name__} "
                                  "there, not code text: set corpus.field to the key holding the code")
            yield value


def _parquet(path: Path, field: str) -> Iterator[str | bytes | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise ConfigError("corpus", str(path), f"not a Parquet file ({error}): {SOURCES}") from None
    columns = table.schema_arrow.names
    if field not in columns:
        raise ConfigError("corpus.field", field, f"not a column of {path}; columns found: "
                          f"{', '.join(columns) or '(none)'}: set corpus.field to the one holding the code")
    kind = table.schema_arrow.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)):
        raise ConfigError("corpus.field", field, f"column of {path} holds {kind}, not code text: set corpus.field "
                          "to the column holding the code")
    for batch in table.iter_batches(batch_size=1024, columns=[field]):
        yield from batch.column(0).to_pylist()


# --- one program --------------------------------------------------------------------------------

def _program(value: str | bytes | None, min_lines: int, max_lines: int | None) -> tuple[list[str] | None, str]:
    """(lines, "") for a kept record, else (None, the reason it is skipped)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None, "not_utf8"
    elif isinstance(value, str):
        try:
            value.encode("utf-8")  # lone surrogates from JSON escapes
        except UnicodeEncodeError:
            return None, "not_utf8"
        value = value.removeprefix("\ufeff")
    if value is None or not value.strip():
        return None, "empty"
    if not _parses(value):
        return None, "not_python"
    lines = [line.rstrip() for line in _NEWLINE.split(value)]
    while not lines[-1]:
        lines.pop()
    if sum(1 for line in lines if line) < min_lines:
        return None, "too_short"
    return lines[:max_lines], ""


def _parses(source: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences and the like are still Python
        try:
            ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


# --- windows ------------------------------------------------------------------------------------

def _without_comments(lines: list[str]) -> list[str]:
    """``lines`` less those that hold only a comment, found by the tokenizer (so not inside strings)."""
    comments = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if token.type == tokenize.COMMENT and not token.line[:token.start[1]].strip():
                comments.add(token.start[0] - 1)
    except (tokenize.TokenError, SyntaxError):
        pass  # a cut-off program: the comments before the cut are known, the rest is inside a string
    return [line for number, line in enumerate(lines) if number not in comments]


def _split(lines: list[str], max_lines: int, level: int = 0) -> list[list[str]]:
    """Pieces of at most ``max_lines``: cut at top-level statements (level 0), blank lines (1), else fixed."""
    if len(lines) <= max_lines:
        return [lines]
    if level == 2:
        return [lines[start:start + max_lines] for start in range(0, len(lines), max_lines)]
    starts = _top_level_starts(lines) if level == 0 else [
        i for i in range(1, len(lines)) if lines[i].strip() and not lines[i - 1].strip()]
    bounds = [0, *starts, len(lines)]
    windows: list[list[str]] = []
    for begin, end in pairwise(bounds):
        for piece in _split(lines[begin:end], max_lines, level + 1):
            if windows and len(windows[-1]) + len(piece) <= max_lines:
                windows[-1] = windows[-1] + piece
            else:
                windows.append(piece)
    return windows


def _top_level_starts(lines: list[str]) -> list[int]:
    """Sorted 0-based line numbers, past the first, where a top-level statement (with its decorators
    and the comment lines right above it) begins; none when the lines do not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            body = ast.parse("\n".join(lines)).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    starts: list[int] = []
    for node in body:
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        if start > (starts[-1] if starts else 0):
            starts.append(start)
    return starts


def _trim(lines: list[str]) -> list[str]:
    """``lines`` without blank lines at either end."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return lines[filled[0]:filled[-1] + 1] if filled else []


def statement_lines(lines: list[str]) -> list[bool]:
    """Per line, whether a new statement begins on it (not blank, not a comment, not inside a string
    or brackets): where a thought may be written before a line of real code. A snippet cut inside a
    construct is read up to the cut."""
    starts = [False] * len(lines)
    expect = True      # the next significant token begins a statement
    try:
        for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                expect = True
            elif token.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER) and expect:
                starts[token.start[0] - 1] = True
                expect = False
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return starts
