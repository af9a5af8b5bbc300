"""Each theory experiment end to end at a tiny scale: the summary contract and what the theory says."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ra3lab.config import compose_experiment
from ra3lab.execute import execute

T2_TINY = ["design=axes", "trials=20", "env.n_tasks=8", "max_samples=512", "reveal_samples=2000",
           "vary.n_options=[8,16,32]", "vary.n_eps=[2,4,8]", "vary.sigma=[0.25,0.5,1.0]"]


def run(name, overrides, force=False):
    return execute(name, compose_experiment(name, overrides), force=force)


def test_same_config_reproduces_the_same_numbers():
    first = run("t2_pruning", T2_TINY)
    again = run("t2_pruning", T2_TINY, force=True)
    assert again["cached"] is False
    assert again["settings"] == first["settings"] and again["thm_3_5_slopes"] == first["thm_3_5_slopes"]


@pytest.mark.slow
def test_theory_check_quick_json_contract(tmp_path):
    env = {**os.environ, "RA3LAB_RUNS": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "ra3lab.cli", "theory", "check", "--quick", "--json"],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    verdicts = summary["verdicts"]
    assert verdicts["lemma_3_2_identity"] and summary["lemma_3_2_max_residual"] < 1e-9
    assert verdicts["thm_3_6_bound_holds"] and summary["thm_3_6_bound_violations"] == 0
    assert summary["passed"] == all(value for value in verdicts.values() if value is not None)
    # the observed rule keeps every distractor that noise reveals, so it can never be compact under noise
    assert summary["thm_3_5_forms"]["per_distractor/observed"]["K=|Z_eps|"]["holds"] is False
    assert "Thm 3.5 K=|Z_eps| violated under per_distractor/observed" in " ".join(summary["contradictions"])
    assert set(summary["thm_3_6_families"]) == {"chain", "annuity"}
    assert all(Path(path).exists() for path in summary["figures"])
    assert "ra3lab theory check: t1_regret_decomposition done" in out.stderr   # progress goes to stderr
    plot = subprocess.run([sys.executable, "-m", "ra3lab.cli", "plot", "theory", "--out", str(tmp_path / "fig"),
                           "--json"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert plot.returncode == 0, plot.stderr
    assert all(Path(path).stat().st_size > 0 for path in json.loads(plot.stdout.strip().splitlines()[-1])["figures"])


def test_an_interrupted_run_resumes_after_its_last_finished_item(monkeypatch, isolated_runs):
    from ra3lab.studies import pruning

    reference = run("t2_pruning", T2_TINY)
    measure, calls = pruning.measure, []

    def failing_at_step_4(config, step, *setting):
        calls.append(step)
        if step == 4:
            raise RuntimeError("node lost")
        return measure(config, step, *setting)

    monkeypatch.setattr(pruning, "measure", failing_at_step_4)
    with pytest.raises(RuntimeError, match="node lost"):
        run("t2_pruning", T2_TINY, force=True)
    run_dir = Path(reference["run_dir"])
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "node lost" in status["error"] and "Traceback" in status["traceback"]
    assert not (run_dir / "summary.json").exists()

    monkeypatch.setattr(pruning, "measure",
                        lambda config, step, *setting: (calls.append(step), measure(config, step, *setting))[1])
    calls.clear()
    resumed = run("t2_pruning", T2_TINY)
    assert calls[0] == 4                                                  # items 0-3 came from the checkpoint
    assert resumed["settings"] == reference["settings"]
    assert json.loads((run_dir / "provenance.json").read_text())["resumes"] == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(len(reference["settings"])))               # no duplicated metric lines
