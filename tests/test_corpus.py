"""Real code corpora: the standard library as a corpus, skip counts, JSONL/Parquet, errors, snippets."""

import json
import sysconfig
import warnings

import pandas as pd
import pytest

from ra3lab.corpus import CorpusStats, load_corpus, snippets
from ra3lab.errors import ConfigError

VALID = "import os\n\n\ndef f(x):\n\treturn os.sep + x   \n"
PROGRAM = ["import os", "", "", "def f(x):", "\treturn os.sep + x"]


def test_the_standard_library_is_a_real_corpus():
    programs, stats = load_corpus(sysconfig.get_paths()["stdlib"], max_files=50)
    assert stats.read == 50 and stats.skipped == stats.read - stats.kept
    assert 40 <= stats.kept == len(programs) <= 50
    assert sum(map(len, programs)) > 5_000  # argparse, ast, ... are thousands of lines
    for lines in programs:
        assert not any(line != line.rstrip() or "\n" in line for line in lines)


def test_a_folder_counts_each_reason_to_skip(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "valid.py").write_text(VALID)
    (tmp_path / "latin.py").write_bytes("# caf\xe9\nx = 'caf\xe9'\ny = 1\nz = 2\n".encode("latin-1"))
    (tmp_path / "prose.py").write_text("This is not Python at all,\nonly prose.\nThree lines.\n")
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "notes.txt").write_text(VALID)  # not a .py file: never read
    with pytest.warns(UserWarning, match="kept 1 of 4; skipped 1 not UTF-8, 1 not Python, 1 empty, 0 too short"):
        programs, stats = load_corpus(tmp_path)
    assert stats == CorpusStats(read=4, kept=1, skipped_not_utf8=1, skipped_not_python=1, skipped_empty=1)
    assert programs == [PROGRAM]  # tabs kept, trailing whitespace and the final newline gone


def test_length_limits_and_no_warning_when_nothing_is_skipped(tmp_path):
    (tmp_path / "a.py").write_text(VALID)
    (tmp_path / "b.py").write_text("x = 1\n\n\n\ny = 2\n")  # 2 non-blank lines
    with pytest.warns(UserWarning, match="1 too short"):
        programs, stats = load_corpus(tmp_path, max_lines=2)
    assert programs == [PROGRAM[:2]] and stats.skipped_too_short == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        programs, stats = load_corpus(tmp_path, min_lines=2, max_files=1)
    assert programs == [PROGRAM] and stats == CorpusStats(read=1, kept=1)


def test_jsonl_and_parquet_round_trip(tmp_path):
    texts = [VALID, "def g():\n    return 1\n# end\n", "not python )(\nat\nall\n", None]
    frame = pd.DataFrame({"id": range(len(texts)), "code": texts})
    jsonl = tmp_path / "corpus.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    with jsonl.open("a") as out:  # Arrow strings cannot hold a lone surrogate, JSON can
        out.write("\n" + json.dumps({"id": 4, "code": "x = '\udc80'"}) + "\n\n")  # blank lines are not records
    expected = CorpusStats(read=5, kept=2, skipped_not_utf8=1, skipped_not_python=1, skipped_empty=1)
    with pytest.warns(UserWarning, match="kept 2 of 5"):
        programs, stats = load_corpus(jsonl, field="code")
    assert stats == expected
    assert programs == [PROGRAM, ["def g():", "    return 1", "# end"]]
    frame.to_parquet(tmp_path / "corpus.parquet")
    with pytest.warns(UserWarning, match="kept 2 of 4"):
        from_parquet, stats = load_corpus(tmp_path / "corpus.parquet", field="code", min_lines=1)
    assert from_parquet == programs and stats.skipped_not_python == stats.skipped_empty == 1
    frame.assign(code=[t.encode("latin-1") if t else None for t in texts]).to_parquet(tmp_path / "b.parquet")
    with pytest.warns(UserWarning, match="kept 2 of 4"):  # a binary column is decoded as UTF-8
        assert load_corpus(tmp_path / "b.parquet", field="code")[0] == programs


def test_a_jsonl_record_that_is_not_utf8_is_skipped(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"content": "x = 1\\ny = 2\\nz = 3\\n"}\n{"content": "s = \'caf\xe9\'"}\n')
    with pytest.warns(UserWarning, match="1 not UTF-8"):
        assert load_corpus(path)[1] == CorpusStats(read=2, kept=1, skipped_not_utf8=1)


@pytest.mark.parametrize("name, content, field, match", [
    ("missing.jsonl", None, "corpus", "no such file or folder"),
    ("code.csv", VALID, "corpus", "unsupported suffix '.csv'"),
    ("folder", {}, "corpus", "no program kept .*kept 0 of 0"),
    ("folder", {"e.py": "\n\n", "s.py": "x = 1\n"}, "corpus", "no program kept .*1 empty, 1 too short"),
    ("k.jsonl", '{"text": "x = 1", "id": 3}\n', "corpus.field", "line 1 of .* has no such key; keys found: text, id"),
    ("n.jsonl", '{"content": 7}\n', "corpus.field", "holds a int"),
    ("j.jsonl", '{"content": "x"}\n{oops\n', "corpus", "line 2 is not JSON"),
    ("l.jsonl", '["x = 1"]\n', "corpus", "holds a list"),
    ("p.parquet", pd.DataFrame({"text": [VALID], "id": [0]}), "corpus.field", "not a column .*columns found: text, id"),
    ("i.parquet", pd.DataFrame({"content": [1]}), "corpus.field", "holds int64"),
    ("x.parquet", VALID, "corpus", "not a Parquet file"),
])
def test_bad_corpora_are_config_errors_naming_the_field(tmp_path, name, content, field, match):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif isinstance(content, dict):
        path.mkdir()
        for file, text in content.items():
            (path / file).write_text(text)
    with pytest.raises(ConfigError, match=match) as error:
        load_corpus(path)
    assert error.value.field == field


@pytest.mark.parametrize("kwargs, field", [
    ({"max_files": 0}, "corpus.max_files"), ({"min_lines": -1}, "corpus.min_lines"),
    ({"max_lines": 0}, "corpus.max_lines"),
])
def test_bad_limits_are_config_errors(tmp_path, kwargs, field):
    with pytest.raises(ConfigError) as error:
        load_corpus(tmp_path, **kwargs)
    assert error.value.field == field


def module(n_functions: int, body: int) -> list[str]:
    """A program of ``n_functions`` top-level functions of ``body`` lines, each with a comment above it."""
    lines = ["import math", ""]
    for f in range(n_functions):
        lines += ["", f"# function {f}", f"def f{f}(x):"] + [f"    x = x + {i}  # step" for i in range(body)]
        lines += ["    return x"]
    return lines


def in_order(chunks: list[list[str]], program: list[str]) -> list[str]:
    """The lines of ``chunks`` cut from ``program``, windows put back in program order."""
    return [line for chunk in sorted(chunks, key=lambda chunk: program.index(chunk[0])) for line in chunk]


def test_snippets_cut_at_top_level_statements_and_are_deterministic():
    program = module(6, 5)
    chunks = snippets([program, ["x = 1", "y = 2"]], max_lines=20)
    assert chunks == snippets([program, ["x = 1", "y = 2"]], max_lines=20)
    assert chunks != snippets([program, ["x = 1", "y = 2"]], max_lines=20, seed=1)
    assert ["x = 1", "y = 2"] in chunks
    chunks.remove(["x = 1", "y = 2"])
    # import + f0 | f1 + f2 | f3 + f4 | f5, each function starting at the comment above it
    assert sorted(chunk[0] for chunk in chunks) == ["# function 1", "# function 3", "# function 5", "import math"]
    assert sorted(map(len, chunks)) == [8, 11, 17, 17]
    assert [line for line in in_order(chunks, program) if line] == [line for line in program if line]
    assert len(snippets([program], max_lines=20, limit=2)) == 2 and snippets([program], limit=0) == []
    assert snippets([program], max_lines=100) == [program]


def test_snippets_fall_back_to_blank_lines_then_fixed_windows():
    long_function = ["def f(x):"] + [f"    x += {i}" for i in range(9)] + [""] + [f"    x -= {i}" for i in range(25)]
    chunks = snippets([long_function], max_lines=10, seed=3)
    assert sorted(map(len, chunks)) == [5, 10, 10, 10]  # 10 lines, then the 25 after the blank line
    assert in_order(chunks, long_function) == [line for line in long_function if line]
    cut_off = ['x = """', "# inside a string"] + ["y = 1"] * 12  # does not parse, has no blank line
    assert sorted(map(len, snippets([cut_off], max_lines=5))) == [4, 5, 5]


def test_drop_comments_removes_comment_lines_only():
    program = [
        "#!/usr/bin/env python",
        "# a comment",
        "def f(x):",
        "    # an indented comment",
        '    """Docstring.',
        "    # not a comment: inside the docstring",
        '    """',
        "    return x  # an inline comment stays",
        "\t# a tab-indented comment",
    ]
    kept = snippets([program], drop_comments=True)
    assert kept == [[program[2], *program[4:8]]]
    assert snippets([program]) == [program]
    # a program cut inside a string: a '#' line after the cut is string text, kept
    cut_off = ["# c", "x = 1", 's = """', "# text", "more text"]
    assert snippets([cut_off], drop_comments=True) == [cut_off[1:]]
