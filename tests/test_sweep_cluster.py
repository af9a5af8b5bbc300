"""Sweeps through the real SLURM cluster of `make slurm-up`: one array job per launch, a killed job
relaunched, a failing job, a preempted job requeued. Marked `cluster` (skipped, with the reason,
where SLURM is absent). Every wait is bounded."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ra3lab.cli import main
from ra3lab.sweep import slurm
from ra3lab.sweep.grid import plan, run_sweep
from ra3lab.sweep.job import RunJob
from ra3lab.sweep.launch import submit
from ra3lab.sweep.status import run_state

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("slurm")]   # one at a time: they share 2 CPUs

REPO = Path(__file__).resolve().parents[1]
T1_TINY = ["n_instances=2", "mc_instances=1", "mc_episodes=20", "mc_horizon=60"]            # ~1 s
SLOW_STEPS = 20   # checkpointed steps of a slow run: ~12 s, so a kill or signal after step 2 lands mid-run
T1_SLOW = [f"n_instances={SLOW_STEPS}", f"mc_instances={SLOW_STEPS}", "mc_episodes=150", "mc_horizon=100"]
SLURM = {"launcher": "slurm", "profile": "localhost"}


@pytest.fixture
def sweeps(tmp_path, monkeypatch):
    """A project root with the real experiments/, envs/ and profiles, and ``sweeps(name, fixed, grid)``."""
    root = tmp_path / "root"
    (root / "sweeps").mkdir(parents=True)
    (root / "slurm").mkdir()
    for name in ("experiments", "envs"):
        (root / name).symlink_to(REPO / name)
    (root / "slurm" / "profiles").symlink_to(REPO / "slurm" / "profiles")
    monkeypatch.setenv("RA3LAB_ROOT", str(root))   # exported to the jobs by sbatch

    def write(name, fixed, grid):
        (root / "sweeps" / f"{name}.yaml").write_text(
            yaml.safe_dump({"experiment": "t1_regret_decomposition", "fixed": fixed, "grid": grid}))
    return write


def metric_steps(run_dir) -> list[int]:
    return [json.loads(line)["step"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def wait_for(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)


def checkpointed(run_dir, steps=2):
    path = Path(run_dir) / "checkpoint.json"
    return lambda: path.exists() and json.loads(path.read_text())["metric_lines"] >= steps


def start_slow(name, isolated_runs):
    """Submit point 0 of sweep ``name`` as a one-task job (as ``run_sweep`` would); returns (batch, run_dir)."""
    the_plan = plan(name)
    kwargs = {"experiment": "t1_regret_decomposition", "overrides": list(the_plan.points[0].overrides),
              "quick": False, "runs_root": str(isolated_runs)}
    batch = submit(RunJob(), [kwargs], folder=the_plan.sweep_dir / "jobs" / "%j", job_name=f"test-{name}", **SLURM)
    return batch, the_plan.runs[0].path


def job_logs(root, job_id, lines=40):
    """The last lines of the submitit logs of ``job_id`` under ``root``, to explain a failed cluster test."""
    logs = sorted(Path(root).rglob(f"{job_id}*_log.*"))
    accounting = subprocess.run(["sacct", "-j", job_id, "--duplicates", "--format=JobID,State,ExitCode,Start,End"],
                                check=False, capture_output=True, text=True, timeout=20).stdout
    tails = "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                      for log in logs) or f"(no logs of job {job_id} under {root})"
    return f"{tails}\n--- sacct\n{accounting}"


def test_a_grid_sweep_runs_as_one_array_job_and_aggregates(sweeps, capsys):
    sweeps("grid", T1_TINY, ["seed=0,1", "keep_probability=0.3,0.6"])
    assert main(["sweep", "grid", "--launcher", "slurm", "--profile", "localhost", "--timeout", "150", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["line"] == "4 runs: 4 done" and summary["failures"] == []
    sweep_dir = Path(summary["sweep_dir"])
    jobs = [json.loads(line)["job_id"] for line in (sweep_dir / "manifest.jsonl").read_text().splitlines()]
    array_id = jobs[0].split("_")[0]
    assert jobs == [f"{array_id}_{i}" for i in range(4)]                      # one array job, four tasks
    assert any((sweep_dir / "jobs").iterdir())                                 # submitit's folder
    for entry in (sweep_dir / "manifest.jsonl").read_text().splitlines():
        provenance = json.loads((Path(json.loads(entry)["run_dir"]) / "provenance.json").read_text())
        assert provenance["slurm_job_id"]                                       # ran inside SLURM
    table = __import__("pandas").read_csv(sweep_dir / "aggregate.csv")
    assert len(table) == 4 and (table["state"] == "done").all() and (table["lemma_3_2_max_residual"] < 1e-9).all()


def test_a_killed_job_is_relaunched_and_every_run_ends_done_exactly_once(sweeps, isolated_runs):
    sweeps("killed", T1_SLOW, ["seed=0,1"])
    batch, run_dir = start_slow("killed", isolated_runs)
    [job_id] = batch.job_ids
    try:
        wait_for(checkpointed(run_dir), 90, "two checkpointed steps")
        # kill -9 the job's process (a plain scancel on this test cluster does not stop a process that
        # ignores SIGTERM, as submitit's does: proctrack/linuxproc lets the step run on)
        pid = json.loads((run_dir / "status.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        [outcome] = batch.wait(timeout_s=90)                                   # ends: the job left the queue
    finally:
        subprocess.run(["scancel", job_id], check=False, timeout=20)
    assert not outcome.ok and "without a result" in outcome.error
    assert run_state(run_dir)["state"] == "interrupted"                        # status.json still said running

    summary = run_sweep("killed", timeout_s=150, **SLURM)                      # point 0 resumes, point 1 starts
    assert summary["launch"] == [0, 1] and summary["line"] == "2 runs: 2 done", summary
    for run in summary["runs"]:
        assert metric_steps(run["run_dir"]) == list(range(SLOW_STEPS))         # every step once
        assert len(list(Path(run["run_dir"]).glob("summary*.json"))) == 1
    assert json.loads((run_dir / "provenance.json").read_text())["resumes"] == 1
    assert run_sweep("killed", **SLURM)["launch"] == []                         # and never again


def test_a_failing_job_is_marked_failed_and_the_others_finish(sweeps, capsys):
    sweeps("failing", T1_TINY, ["seed=0,1,2"])
    broken = plan("failing").runs[1].path
    broken.mkdir(parents=True)
    (broken / "checkpoint.json").write_text('{"metric_lines": 3, "maps": {"T1 inst')   # a torn checkpoint
    assert main(["sweep", "failing", "--launcher", "slurm", "--profile", "localhost", "--timeout", "150",
                 "--json"]) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["line"] == "3 runs: 2 done, 1 failed"
    [failure] = summary["failures"]
    assert failure["index"] == 1 and "JSONDecodeError" in failure["error"]
    status = json.loads((broken / "status.json").read_text())
    assert status["state"] == "failed" and status["error"].startswith("JSONDecodeError") and status["slurm_job_id"]
    assert "checkpoint" in status["traceback"]


def test_a_preempted_job_is_requeued_and_its_run_continues_where_it_stopped(sweeps, isolated_runs):
    sweeps("preempted", T1_SLOW, ["seed=0"])
    batch, run_dir = start_slow("preempted", isolated_runs)
    [job_id] = batch.job_ids
    finished = False
    try:
        wait_for(checkpointed(run_dir), 90, "two checkpointed steps")
        first = (run_dir / "metrics.jsonl").read_text().splitlines()[:2]
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=20)   # what SLURM sends on preemption
        # submitit's handler requeues the job; SLURM starts it again once its old credential expires
        # (AuthInfo=cred_expire, 30 s on the test cluster; moving its start earlier makes the launch fail)
        wait_for(lambda: (slurm.queued_jobs() or {}).get(job_id) == "PENDING", 60, "the job to be requeued")
        [outcome] = batch.wait(timeout_s=300)
        finished = outcome.ok
        assert outcome.ok and outcome.result["state"] == "done", outcome
        assert metric_steps(run_dir) == list(range(SLOW_STEPS))
        assert (run_dir / "metrics.jsonl").read_text().splitlines()[:2] == first   # the steps before kept, not redone
        assert json.loads((run_dir / "provenance.json").read_text())["resumes"] == 1
        assert run_state(run_dir)["state"] == "done"
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{job_logs(isolated_runs.parent, job_id)}") from failure
    finally:
        if not finished:   # a finished job may still be completing: cancelling it would mark it CANCELLED
            subprocess.run(["scancel", job_id], check=False, timeout=20)


@pytest.mark.slow
def test_bench_sweep_runs_both_launchers_on_the_same_runs_and_separates_the_fixed_skip_cost(capsys):
    assert main(["bench", "sweep", "n_runs=3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ours_runs_done"] == report["peer_runs_done"] == 3
    assert report["ours_s"] > 0 and report["peer_s"] > 0 and report["overhead_ratio"] > 0
    assert report["skip_per_100_runs_s"] == pytest.approx(
        report["skip_one_run_s"] + 99 * (report["skip_warm_s"] - report["skip_one_run_s"]) / 2)
    assert "hydra-submitit-launcher" in report["peer"]


@pytest.mark.slow
def test_bench_pipeline_computes_each_upstream_once_with_the_same_curves_as_one_job_per_point(capsys):
    assert main(["bench", "pipeline", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["points"], report["stage_runs"]) == (4, 1 + 2 + 4)
    assert report["ours_upstream_runs"] == {"pretrain": 1, "midtrain": 2} and report["upstream_once"]
    assert report["peer_upstream_runs"] == {"pretrain": 4, "midtrain": 4}     # each job computed its whole chain
    assert report["same_results"]
    assert report["ours_cpu_s"] > 0 and report["peer_cpu_s"] > 0
    assert report["compute_ratio"] == report["ours_cpu_s"] / report["peer_cpu_s"]
    assert report["meets_target"] == (report["compute_ratio"] <= 0.5)


def test_a_codeworld_plan_sweep_runs_stage_by_stage_and_draws_theory_next_to_practice(sweeps, capsys, tmp_path):
    """The pruning sweep's shape at a tiny scale: |D_E| in {8, 16}, NTP only, one RLVR seed: the base with its arm,
    evaluation and RLVR (which no cell's corpus changes, so both cells share them), per cell NTP's mid-training,
    evaluation and RLVR, and the study."""
    from tests.test_codeworld_plan_study import PLAN

    fixed = [o for o in PLAN if not o.startswith(("references", "seeds", "cs", "data.midtrain"))]
    sweeps("plan", [*fixed, "references=[ntp]", "cs=[]", "seeds=[0]"], ["data.midtrain=8,16"])
    sweep_file = Path(os.environ["RA3LAB_ROOT"]) / "sweeps" / "plan.yaml"
    sweep_file.write_text(sweep_file.read_text().replace("t1_regret_decomposition", "codeworld_plan"))
    assert main(["sweep", "plan", "--launcher", "slurm", "--profile", "localhost", "--timeout", "600", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["failures"] == [] and summary["line"] == "2 runs: 2 done"
    stages = [json.loads(line) for line in (Path(summary["sweep_dir"]) / "stages.jsonl").read_text().splitlines()]
    counts = {name: sum(s["experiment"] == name for s in stages)
              for name in ("pretrain", "midtrain", "evaluate", "rlvr", "codeworld_plan")}
    assert counts == {"pretrain": 1, "midtrain": 3, "evaluate": 3, "rlvr": 3, "codeworld_plan": 2}
    assert main(["plot", "plan", summary["sweep_dir"], "--out", str(tmp_path / "figures"), "--json"]) == 0
    drawn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert drawn["panels"] == 2 and all(Path(path).exists() for path in drawn["figures"])   # P0 and S* of NTP
