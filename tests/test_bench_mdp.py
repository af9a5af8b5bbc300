"""`ra3lab bench mdp` at tiny scale: the report's contract (keys, agreement with mdptoolbox-hiive,
positive times) and refusal of bad input. No timing assertions: machines are noisy."""

from __future__ import annotations

import json

import pytest
import torch

from ra3lab.bench import BENCHMARKS
from ra3lab.bench.mdp import run
from ra3lab.envs.random_dense import random_dense
from ra3lab.errors import ConfigError
from ra3lab.mdp import planning

pytest.importorskip("hiive.mdptoolbox.mdp")

KEYS = {"ours_s", "peer_s", "peer_run_only_s", "speedup", "speedup_run_only", "max_abs_value_diff", "iterations_agree",
        "mean_iterations", "bellman_bandwidth_gbs", "numpy_copy_bandwidth_gbs", "bandwidth_ratio", "peer", "threads",
        "target_speedup", "meets_target", "notes"}


@pytest.fixture(scope="module")
def report():
    return run(n_mdps=20, n_states=12, n_options=4, repeats=2, progress=False)


def test_registered():
    assert BENCHMARKS["mdp"] is run


def test_report_contract(report):
    assert KEYS <= report.keys()
    json.dumps(report)                                   # JSON-able
    assert all(not isinstance(value, dict) for value in report.values())
    assert report["peer"].startswith("mdptoolbox-hiive ")
    assert report["target_speedup"] == 20
    assert isinstance(report["meets_target"], bool) and isinstance(report["iterations_agree"], bool)


def test_same_answers_as_peer(report):
    assert report["iterations_agree"]
    assert report["max_abs_value_diff"] <= 1e-6
    assert report["mean_iterations"] >= 1


def test_positive_measurements(report):
    for key in ("ours_s", "peer_s", "peer_run_only_s", "speedup", "speedup_run_only", "bellman_bandwidth_gbs",
                "numpy_copy_bandwidth_gbs", "bandwidth_ratio"):
        assert report[key] > 0, key
    assert report["peer_run_only_s"] <= report["peer_s"]
    assert report["threads"] >= 1


@pytest.mark.parametrize("field, value", [("n_mdps", 0), ("n_states", 1), ("n_options", 0), ("gamma", 1.0),
                                          ("gamma", 0.0), ("tol", 0.0), ("tol", -1e-6), ("repeats", 0),
                                          ("n_mdps", 2.5)])
def test_bad_input(field, value):
    with pytest.raises(ConfigError, match=field):
        run(**{field: value}, progress=False)


def test_blocked_value_iteration_matches_one_block(monkeypatch):
    """value_iteration solves MDPs in cache-sized blocks; the block size must not change any answer."""
    smdp = random_dense(n_tasks=13, n_states=10, n_options=3, seed=1).abstract
    allowed = torch.rand(13, 3, generator=torch.Generator().manual_seed(0)) < 0.6
    whole = planning.value_iteration(smdp, tol=1e-9, allowed=allowed)
    monkeypatch.setattr(planning, "BLOCK_BYTES", 1)      # one MDP per block
    blocked = planning.value_iteration(smdp, tol=1e-9, allowed=allowed)
    for name in ("values", "q", "policy", "iterations", "converged"):
        assert torch.equal(getattr(whole, name), getattr(blocked, name)), name
