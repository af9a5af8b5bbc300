"""`ra3lab bench mdp` at tiny scale: the report's contract (keys, agreement with mdptoolbox-hiive,
ratios computed from the reported medians, the caches the in-cache figures were sized from) and refusal of
bad input. No timing assertions: machines are noisy."""

from __future__ import annotations

import json
from statistics import median

import pytest

from ra3lab.bench import BENCHMARKS
from ra3lab.bench.mdp import cache_sizes, meets_target, run
from ra3lab.errors import ConfigError

pytest.importorskip("hiive.mdptoolbox.mdp")

N_MDPS, N_STATES, N_OPTIONS = 20, 12, 4
KEYS = {"ours_s", "ours_repeats_s", "ours_compile_s",
        "peer_s", "peer_repeats_s", "peer_run_only_s", "peer_run_only_repeats_s", "speedup",
        "speedup_run_only", "max_abs_value_diff", "values_agree", "iterations_agree", "mean_iterations", "model_bytes",
        "mdp_bytes", "cache_levels", "cache_bytes", "bellman_bandwidth_gbs",
        "memory_copy_bandwidth_gbs", "cache_copy_bandwidth_gbs", "cache_sweep_bandwidth_gbs",
        "bandwidth_vs_memory_copy", "bandwidth_vs_cache_copy", "peer", "threads", "load_average", "target_speedup",
        "target_speedup_run_only", "meets_target", "notes"}


@pytest.fixture(scope="module")
def report():
    return run(n_mdps=N_MDPS, n_states=N_STATES, n_options=N_OPTIONS, repeats=3, progress=False)


def test_registered():
    assert BENCHMARKS["mdp"] is run


def test_report_contract(report):
    assert KEYS <= report.keys()
    json.dumps(report)                                   # JSON-able
    assert all(not isinstance(value, dict) for value in report.values())
    assert report["peer"].startswith("mdptoolbox-hiive ")
    assert (report["target_speedup"], report["target_speedup_run_only"]) == (20, 8)
    for key in ("ours_repeats_s", "peer_repeats_s", "peer_run_only_repeats_s"):
        assert len(report[key]) == 3 and min(report[key]) > 0, key


def test_same_answers_as_peer(report):
    assert report["iterations_agree"] and report["values_agree"]
    assert report["max_abs_value_diff"] <= 1e-6
    assert report["mean_iterations"] >= 1


def test_ratios_come_from_the_reported_medians(report):
    assert report["ours_s"] == median(report["ours_repeats_s"])
    assert report["peer_s"] == median(report["peer_repeats_s"])
    assert report["peer_run_only_s"] == median(report["peer_run_only_repeats_s"])
    assert report["speedup"] == report["peer_s"] / report["ours_s"]
    assert report["speedup_run_only"] == report["peer_run_only_s"] / report["ours_s"]
    assert all(ours <= total for ours, total in zip(report["peer_run_only_repeats_s"], report["peer_repeats_s"]))
    model_reads = report["mean_iterations"] * report["model_bytes"]          # bytes the sweeps must read
    assert report["bellman_bandwidth_gbs"] == pytest.approx(model_reads / report["ours_s"] / 1e9, rel=1e-12)
    for copy in ("memory", "cache"):
        copied = report[f"{copy}_copy_bandwidth_gbs"]
        assert report[f"bandwidth_vs_{copy}_copy"] == report["bellman_bandwidth_gbs"] / copied
    assert report["meets_target"] == meets_target(report)


@pytest.mark.parametrize("changes, expected", [({}, True), ({"speedup": 19.9}, False),
                                               ({"speedup_run_only": 7.9}, False), ({"values_agree": False}, False),
                                               ({"iterations_agree": False}, False)])
def test_target_needs_both_ratios_and_the_same_answers(changes, expected):
    passing = {"speedup": 20.0, "speedup_run_only": 8.0, "values_agree": True, "iterations_agree": True}
    assert meets_target({**passing, **changes}) is expected


def test_reports_model_sizes_and_caches(report):
    mdp_bytes = N_OPTIONS * N_STATES**2 * 8
    assert (report["model_bytes"], report["mdp_bytes"]) == (N_MDPS * mdp_bytes, mdp_bytes)
    assert dict(zip(report["cache_levels"], report["cache_bytes"])) == cache_sizes()
    assert report["cache_sweep_bandwidth_gbs"] > 0


def test_cache_sizes_read_data_and_unified_caches(tmp_path):
    caches = [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "32M")]
    for index, (level, kind, size) in enumerate(caches):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, text in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{text}\n")
    assert cache_sizes(tmp_path) == {1: 48 * 2**10, 2: 2 * 2**20, 3: 32 * 2**20}
    assert cache_sizes(tmp_path / "absent") == {}


@pytest.mark.parametrize("field, value", [("n_mdps", 0), ("n_states", 1), ("n_options", 0), ("gamma", 1.0),
                                          ("gamma", 0.0), ("tol", 0.0), ("tol", -1e-6), ("repeats", 0),
                                          ("n_mdps", 2.5)])
def test_bad_input(field, value):
    with pytest.raises(ConfigError, match=field):
        run(**{field: value}, progress=False)
