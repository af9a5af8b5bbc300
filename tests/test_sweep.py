"""Sweeps with the local launcher: Hydra's grid grammar, dry runs, relaunch, --failed, status, aggregate,
and every bad input stopping before anything is written or submitted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ra3lab.cli import main
from ra3lab.errors import ConfigError
from ra3lab.sweep import slurm
from ra3lab.sweep.aggregate import flatten, load_aggregate
from ra3lab.sweep.grid import plan, run_sweep
from ra3lab.sweep.job import RunJob
from ra3lab.sweep.launch import launch, submit
from ra3lab.sweep.profiles import load_profile
from ra3lab.sweep.space import load_space
from ra3lab.sweep.spec import SweepSpec, expand, load_spec
from ra3lab.sweep.status import run_state

REPO = Path(__file__).resolve().parents[1]
T1_TINY = ["n_instances=1", "mc_instances=0", "mc_episodes=0"]   # ~0.6 s per run
TINY = {"experiment": "t1_regret_decomposition", "fixed": T1_TINY, "grid": ["seed=0,1", "keep_probability=0.3,0.6"]}


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A project root with the real experiments/ and envs/ and a sweeps/ and slurm/profiles/ of the test's own.

    ``root.sweep(name, **spec)`` and ``root.profile(name, **keys)`` write files into it.
    """
    path = tmp_path / "root"
    (path / "sweeps").mkdir(parents=True)
    (path / "slurm" / "profiles").mkdir(parents=True)
    for name in ("experiments", "envs"):
        (path / name).symlink_to(REPO / name)
    for profile in (REPO / "slurm" / "profiles").glob("*.yaml"):
        (path / "slurm" / "profiles" / profile.name).symlink_to(profile)
    monkeypatch.setenv("RA3LAB_ROOT", str(path))

    class Root:
        def sweep(self, name, text=None, **spec):
            import yaml
            (path / "sweeps" / f"{name}.yaml").write_text(text if text is not None else yaml.safe_dump(spec))

        def profile(self, name, **keys):
            import yaml
            (path / "slurm" / "profiles" / f"{name}.yaml").write_text(yaml.safe_dump(keys))

    return Root()


def metric_steps(run_dir) -> list[int]:
    return [json.loads(line)["step"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


# --- the grid: Hydra's grammar ------------------------------------------------------------------

def test_expansion_follows_hydras_sweep_grammar():
    spec = SweepSpec(name="s", experiment="t4_abstraction", fixed=("trials=2",),
                     grid=("surface.budgets=[2],[4]", "seed=range(0,3)", "env=chain,star"))
    points = expand(spec)
    assert len(points) == 2 * 3 * 2
    assert points[0].overrides == ("trials=2", "surface.budgets=[2]", "seed=0", "env=chain")   # axes in written order
    assert points[1].overrides[-1] == "env=star" and points[2].overrides[-2] == "seed=1"
    assert {p.params["seed"] for p in points} == {0, 1, 2} and isinstance(points[0].params["seed"], int)
    assert points[0].params == {"surface.budgets": "[2]", "seed": 0, "env": "chain"}   # fixed keys are not columns
    assert all(p.overrides[0] == "trials=2" for p in points)

    def grid(*extra, grid=()):
        return [p.params for p in expand(SweepSpec(name="s", experiment="t2_pruning", grid=grid, extra=extra))]

    assert grid(grid=("seed=range(0,10,step=4)",)) == [{"seed": 0}, {"seed": 4}, {"seed": 8}]
    assert grid(grid=("rule=choice(observed,top_k)",)) == [{"rule": "observed"}, {"rule": "top_k"}]
    assert grid(grid=("eps='0.1,0.2'",)) == [{"eps": "0.1,0.2"}]                    # quoted: one value
    assert grid(grid=("base.sigma=0.25,1.0", "seed=0,1")) == grid("seed=0,1", grid=("base.sigma=0.25,1.0",))
    # the command line replaces an axis with the same key and adds new ones
    assert grid("seed=7", "trials=3,4", grid=("seed=0,1",)) == [{"seed": 7, "trials": 3}, {"seed": 7, "trials": 4}]
    assert grid("+rule_kwargs.k=2,4", grid=("seed=0",))[1] == {"seed": 0, "rule_kwargs.k": 4}


def test_the_shipped_sweeps_expand_and_every_point_validates():
    sizes = {name: len(plan(name).points) for name in ("t3_gamma_seeds", "t2_rules")}
    assert sizes == {"t3_gamma_seeds": 12, "t2_rules": 9}
    for path in (REPO / "sweeps").glob("*.yaml"):
        assert path.read_text().startswith("# "), f"{path.name} must say what it is for in its first line"


# --- dry run ------------------------------------------------------------------------------------

def test_dry_run_prints_every_run_and_the_sbatch_script_and_submits_nothing(capsys, isolated_runs, monkeypatch):
    monkeypatch.setattr("ra3lab.sweep.grid.submit", lambda *a, **k: pytest.fail("a dry run submitted"))
    argv = ["sweep", "t4_budget_penalty", "--launcher", "slurm", "--profile", "localhost", "--dry-run"]
    assert main([*argv, "--json"]) == 0
    summary = last_json(capsys)
    assert summary["dry_run"] and summary["n_runs"] == 27 and summary["launch"] == list(range(27))
    assert {run["state"] for run in summary["runs"]} == {"pending"}
    assert summary["runs"][0]["params"] == {"surface.budgets": "[2]", "surface.penalties": "[0.0]", "seed": 0}
    script = summary["sbatch"]["script"]
    for line in ("#SBATCH --array=0-26%2", "#SBATCH --partition=debug", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --mem=2GB", "#SBATCH --time=10", "#SBATCH --signal=USR2@90", "-m submitit.core._submit"):
        assert line in script
    assert summary["sbatch"]["parameters"]["array_parallelism"] == 2
    assert not isolated_runs.exists()   # nothing written: no sweep directory, no run

    argv = ["sweep", "t2_rules", "--launcher", "slurm", "--profile", "example_gpu", "--dry-run"]
    assert main(argv) == 0               # the human form: a table of runs, then the parameters and the script
    out = capsys.readouterr().out
    assert "9 runs: 9 pending" in out and "rule=top_k base.sigma=1.0" in out and "gpus_per_node: 1" in out
    for line in ("#SBATCH --gpus-per-node=1", "#SBATCH --account=my-lab", "#SBATCH --constraint=a100",
                 "#SBATCH --mem=64GB", "#SBATCH --cpus-per-task=8", "#SBATCH --array=0-8%9",
                 "#SBATCH --signal=USR2@180", "module load cuda/12.4"):
        assert line in out
    assert not isolated_runs.exists()


# --- launching, relaunching, status, aggregate ----------------------------------------------------

def test_local_sweep_runs_every_point_aggregates_and_a_relaunch_skips_done_runs(root, capsys, monkeypatch):
    root.sweep("tiny", **TINY)
    assert main(["sweep", "tiny", "--workers", "2", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["counts"]["done"] == 4 and summary["launch"] == [0, 1, 2, 3] and summary["failures"] == []
    lines = [line for line in captured.err.splitlines() if line.startswith("ra3lab sweep tiny: ")]
    assert lines[0].startswith("ra3lab sweep tiny: launching 4 of 4 runs (local)")
    assert [line.split(",")[0].removeprefix("ra3lab sweep tiny: ") for line in lines[1:]] == [
        "1/4 (25%)", "2/4 (50%)", "3/4 (75%)", "4/4 (100%)"]                # a line per run, with its rate and ETA
    assert all(" elapsed, ETA " in line for line in lines[1:4]) and lines[4].endswith(": done")
    sweep_dir = Path(summary["sweep_dir"])
    assert sweep_dir.parent.name == "tiny" and sweep_dir.parent.parent.name == "sweeps"
    assert {p.name for p in sweep_dir.iterdir()} >= {"sweep.yaml", "manifest.jsonl", "aggregate.csv"}
    manifest = [json.loads(line) for line in (sweep_dir / "manifest.jsonl").read_text().splitlines()]
    assert [entry["overrides"][-2:] for entry in manifest][1] == ["seed=0", "keep_probability=0.6"]
    assert all(Path(entry["run_dir"]).parent.name == "t1_regret_decomposition" for entry in manifest)

    table = load_aggregate(sweep_dir)
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert list(table.columns[:2]) == ["seed", "keep_probability"]
    assert (table["state"] == "done").all() and (table["lemma_3_2_max_residual"] < 1e-9).all()
    assert "figures" not in table.columns   # lists are left out
    csv = pd.read_csv(sweep_dir / "aggregate.csv")
    assert list(csv.columns) == list(table.columns) and list(csv["seed"]) == list(table["seed"])
    assert csv["mean_rl_error"].to_numpy() == pytest.approx(table["mean_rl_error"].to_numpy())

    monkeypatch.setattr("ra3lab.sweep.grid.submit", lambda *a, **k: pytest.fail("done runs were relaunched"))
    assert main(["sweep", "tiny", "--json"]) == 0       # idempotent: everything is done, nothing is launched
    again = last_json(capsys)
    assert again["launch"] == [] and again["sweep_dir"] == str(sweep_dir) and again["counts"]["done"] == 4

    assert main(["status", str(sweep_dir), "--json"]) == 0
    status = last_json(capsys)
    assert status["line"] == "4 runs: 4 done" and [run["state"] for run in status["runs"]] == ["done"] * 4
    assert main(["status", "tiny"]) == 0               # a sweep name finds its latest directory; a table
    out = capsys.readouterr().out
    assert "4 runs: 4 done" in out and manifest[3]["run_id"] in out


def test_a_failing_run_is_marked_failed_and_failed_relaunches_only_it(root, capsys):
    root.sweep("three", experiment="t1_regret_decomposition", fixed=T1_TINY, grid=["seed=0,1,2"])
    runs = plan("three").runs
    runs[1].path.mkdir(parents=True)
    (runs[1].path / "checkpoint.json").write_text('{"metric_lines": 1, "ma')   # a torn write: unreadable
    assert main(["sweep", "three", "--json"]) == 1                             # runs failed: exit 1, listed
    summary = last_json(capsys)
    assert [f["index"] for f in summary["failures"]] == [1] and "JSONDecodeError" in summary["failures"][0]["error"]
    assert summary["line"] == "3 runs: 2 done, 1 failed"
    state = run_state(runs[1].path)
    assert state["state"] == "failed" and state["error"].startswith("JSONDecodeError")

    (runs[1].path / "checkpoint.json").unlink()         # fix the cause; forget run 2 (it becomes pending)
    for path in sorted(runs[2].path.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert main(["sweep", "three", "--failed", "--json"]) == 0
    summary = last_json(capsys)
    assert summary["launch"] == [1] and summary["line"] == "3 runs: 2 done, 1 pending"   # the pending one waits
    assert main(["sweep", "three", "--dry-run", "--json"]) == 0                          # a plain launch would take it
    assert last_json(capsys)["launch"] == [2]


def test_a_killed_worker_leaves_an_interrupted_run_that_resumes_on_relaunch(root, isolated_runs):
    root.sweep("slow", experiment="t1_regret_decomposition", grid=["seed=0"],
               fixed=["n_instances=3", "mc_instances=3", "mc_episodes=150", "mc_horizon=100"])
    the_plan = plan("slow")
    run_dir = the_plan.runs[0].path
    batch = submit(RunJob(), [{"experiment": "t1_regret_decomposition", "overrides": list(the_plan.points[0].overrides),
                               "quick": False, "runs_root": str(isolated_runs)}], workers=1, folder=isolated_runs)
    deadline = time.monotonic() + 60
    while not (run_dir / "checkpoint.json").exists():     # one step logged and checkpointed
        assert time.monotonic() < deadline, "the run never checkpointed a step"
        time.sleep(0.05)
    pid = json.loads((run_dir / "status.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)                           # the pool worker this test started
    [outcome] = batch.wait(timeout_s=60)
    assert not outcome.ok and "died" in outcome.error
    assert run_state(run_dir)["state"] == "interrupted"    # status.json still says running; its process is gone

    summary = run_sweep("slow")
    assert summary["launch"] == [0] and summary["line"] == "1 run: 1 done"
    assert metric_steps(run_dir) == [0, 1, 2]              # each step exactly once
    assert json.loads((run_dir / "provenance.json").read_text())["resumes"] == 1


# --- status states --------------------------------------------------------------------------------

def test_status_reads_each_state_and_checks_that_running_jobs_are_alive(tmp_path, capsys, monkeypatch):
    sweep_dir = tmp_path / "runs" / "sweeps" / "fake" / "0123456789ab"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    here = socket.gethostname()
    statuses = {
        "done": None, "pending": None,
        "running": {"state": "running", "host": here, "pid": os.getpid(), "slurm_job_id": None},
        "dead_pid": {"state": "running", "host": here, "pid": dead.pid, "slurm_job_id": None},
        "failed": {"state": "failed", "host": here, "pid": dead.pid, "error": "ValueError: broken\nmore",
                   "traceback": "..."},
        "gone_job": {"state": "running", "host": "node7", "pid": 1, "slurm_job_id": "901"},
        "requeued": {"state": "failed", "host": "node7", "pid": 1, "slurm_job_id": "902", "error": "SystemExit: -1"},
    }
    lines = []
    for i, (name, status) in enumerate(statuses.items()):
        run_dir = tmp_path / "runs" / "t1" / name
        run_dir.mkdir(parents=True)
        if name == "done":
            (run_dir / "summary.json").write_text("{}")
        elif status:
            (run_dir / "status.json").write_text(json.dumps(status))
        lines.append(json.dumps({"index": i, "overrides": [f"x={i}"], "params": {"x": i}, "experiment": "t1",
                                 "run_id": name, "run_dir": str(run_dir), "job_id": None}))
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "manifest.jsonl").write_text("\n".join(lines) + "\n")

    monkeypatch.setattr(slurm, "queued_jobs", lambda: {"902": "PENDING"})   # 901 has left the queue
    assert main(["status", str(sweep_dir), "--json"]) == 0
    status = last_json(capsys)
    assert [run["state"] for run in status["runs"]] == ["done", "pending", "running", "interrupted", "failed",
                                                        "interrupted", "running"]
    assert status["line"] == "7 runs: 1 done, 2 running, 2 interrupted, 1 failed, 1 pending"
    assert status["runs"][4]["error"].startswith("ValueError: broken")
    assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "ValueError: broken" in out and "more" not in out and "7 runs:" in out

    monkeypatch.setattr(slurm, "queued_jobs", lambda: None)      # squeue does not answer: cannot tell
    state = run_state(tmp_path / "runs" / "t1" / "gone_job")
    assert state == {**state, "state": "running", "verified": False}


def test_flatten_keeps_scalars_and_names_nested_ones_with_slashes():
    summary = {"a": 1, "b": {"c": 2.5, "d": {"e": "x"}}, "curve": [1, 2], "f": None, "ok": True}
    assert flatten(summary) == {"a": 1, "b/c": 2.5, "b/d/e": "x", "f": None, "ok": True}


# --- the generic launcher ---------------------------------------------------------------------------

def test_launch_runs_module_functions_in_processes_and_bounds_the_wait(tmp_path):
    outcomes = launch(pow, [{"base": 2, "exp": 10}, {"base": 3, "exp": "x"}], folder=tmp_path, workers=2)
    assert outcomes[0].ok and outcomes[0].result == 1024 and outcomes[0].job_id is None
    assert not outcomes[1].ok and "TypeError" in outcomes[1].error
    start = time.monotonic()
    [slow] = launch(subprocess.run, [{"args": ["sleep", "5"]}], folder=tmp_path, timeout_s=1)
    assert not slow.ok and "1 s" in slow.error and time.monotonic() - start < 4


# --- bad input: a clear error naming the field, before anything is written or submitted -------------

@pytest.mark.parametrize("argv, field, hint", [
    (["sweep", "nowhere"], "sweep", "t4_budget_penalty"),
    (["sweep", "t3_gamma_seeds", "nonsense=1,2"], "nonsense", "taus"),
    (["sweep", "t3_gamma_seeds", "gammas=[0.9],[1.5]"], "gammas", "sweep point 4"),
    (["sweep", "t3_gamma_seeds", "seed=range(3,0)"], "seed", "no values"),
    (["sweep", "t3_gamma_seeds", "seed=1,,2"], "overrides", "grammar"),
    (["sweep", "t3_gamma_seeds", "seed=interval(0,1)"], "grid", "discrete"),
    (["sweep", "t3_gamma_seeds", "--launcher", "pbs"], "launcher", "local, slurm"),
    (["sweep", "t3_gamma_seeds", "--launcher", "slurm", "--profile", "big"], "profile", "localhost"),
    (["sweep", "t3_gamma_seeds", "--launcher", "slurm"], "profile", "--profile"),
    (["sweep", "t3_gamma_seeds", "--profile", "localhost"], "profile", "--launcher slurm"),
    (["sweep", "t3_gamma_seeds", "--launcher", "slurm", "--profile", "localhost", "--workers", "2"], "workers",
     "array_parallelism"),
    (["sweep", "t3_gamma_seeds", "--workers", "0"], "workers", ">= 1"),
    (["status", "nowhere"], "sweep_dir", "manifest.jsonl"),
])
def test_bad_input_is_a_clear_error_before_anything_runs(argv, field, hint, capsys, isolated_runs, monkeypatch):
    monkeypatch.delenv("RA3LAB_SLURM_PROFILE", raising=False)
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out.strip().splitlines()[-1])
    assert error["field"].endswith(field) and hint in error["error"], error
    assert "ra3lab: error:" in captured.err
    assert not isolated_runs.exists()


E = "experiment: t1_regret_decomposition\n"


@pytest.mark.parametrize("text, field, hint", [
    (E + "fixed:\n  - seed=1\n", "grid", "no points"),
    (E + "grid: []\n", "grid", "no points"),
    (E + "grids:\n  - seed=0,1\n", "grids", "experiment, quick, fixed, grid"),
    ("experiment: t9\ngrid:\n  - seed=0,1\n", "experiment", "t1_regret_decomposition"),
    ("grid:\n  - seed=0,1\n", "experiment", "t1_regret_decomposition"),
    (E + "fixed:\n  - seed=0,1\ngrid:\n  - n_instances=1\n", "fixed", "under grid"),
    (E + "grid: seed=0,1\n", "grid", "list of Hydra overrides"),
    (E + "grid: [seed=0,1]\n", "grid", "own line"),        # YAML's flow list splits at the comma: an error, not 2 axes
    (E + "quick: maybe\ngrid:\n  - seed=0,1\n", "quick", "true or false"),
    (E + "grid:\n  - seed=0,0\n", "grid", "same config"),
    ("experiment: [t1\n", "sweep", "YAML"),
])
def test_bad_sweep_files_are_clear_errors(text, field, hint, root, isolated_runs):
    root.sweep("bad", text=text)
    with pytest.raises(ConfigError) as error:
        run_sweep("bad", dry_run=True)
    assert error.value.field.endswith(field) and hint in str(error.value), str(error.value)
    assert not isolated_runs.exists()


@pytest.mark.parametrize("keys, field, hint", [
    ({"cpus_per_task": 1}, "partition", "names its partition"),
    ({"partition": "debug", "partitions": "x"}, "partitions", "partition, account"),
    ({"partition": "debug", "cpus_per_task": 0}, "cpus_per_task", ">= 1"),
    ({"partition": "debug", "mem_gb": "lots"}, "mem_gb", "in GB"),
    ({"partition": "debug", "setup": "module load x"}, "setup", "shell lines"),
    ({"partition": "debug", "timeout_min": 2, "signal_delay_s": 120}, "signal_delay_s", "below the time limit (120 s)"),
    ({"partition": "debug", "signal_delay_s": 0}, "signal_delay_s", ">= 1"),
])
def test_bad_profiles_are_clear_errors(keys, field, hint, root, isolated_runs):
    root.sweep("tiny", **TINY)
    root.profile("bad", **keys)
    with pytest.raises(ConfigError) as error:
        run_sweep("tiny", launcher="slurm", profile="bad", dry_run=True)
    assert error.value.field == f"bad.{field}" and hint in str(error.value), str(error.value)
    assert not isolated_runs.exists()


KINDS = {   # label: (file name, loader, a required key, a valid value of it, a typed key, its type)
    "sweep": ("bad", load_spec, "experiment", "t1_regret_decomposition", "quick", "bool"),
    "space": ("bad_space", load_space, "experiment", "t1_regret_decomposition", "quick", "bool"),
    "profile": ("bad", load_profile, "partition", "debug", "cpus_per_task", "int"),
}
DEFECTS = [   # (text, field, the start of the message), formatted with the kind's names
    ("[1, 2]\n", "{label}", "must be a mapping with keys "),
    ("a: [1\n", "{label}", "is not valid YAML: "),
    ("nope: 1\n", "bad.nope", "a {label} file has keys "),
    ("{typed}: null\n", "bad.{required}", "every {label} file names its {required}: "),
    ("{required}: 3\n", "bad.{required}", "expected str: "),
    ("{required}: {value}\n{typed}: [x]\n", "bad.{typed}", "expected {type}: "),
]


@pytest.mark.parametrize("label", list(KINDS))
@pytest.mark.parametrize("text, field, start", DEFECTS, ids=["not a mapping", "not YAML", "unknown key", "missing key",
                                                             "wrong type", "wrong type of a second key"])
def test_sweep_space_and_profile_files_report_a_defect_the_same_way(label, text, field, start, root):
    file, loader, required, value, typed, kind = KINDS[label]
    names = {"label": label, "required": required, "value": value, "typed": typed, "type": kind}
    folder = "slurm/profiles" if label == "profile" else "sweeps"
    (Path(os.environ["RA3LAB_ROOT"]) / folder / f"{file}.yaml").write_text(text.format(**names))
    with pytest.raises(ConfigError) as error:
        loader("bad")
    assert error.value.field == field.format(**names), str(error.value)
    assert error.value.valid.startswith(start.format(**names)), str(error.value)


def test_a_slurm_launch_checks_the_cluster_before_writing_anything(root, isolated_runs, monkeypatch):
    root.sweep("tiny", **TINY)
    monkeypatch.setattr(slurm, "partitions", lambda: ["batch", "gpu"])
    monkeypatch.setattr(slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ConfigError, match="partitions are batch, gpu") as error:
        run_sweep("tiny", launcher="slurm", profile="localhost")
    assert error.value.field == "localhost.partition"
    monkeypatch.setattr(slurm, "partitions", lambda: None)
    with pytest.raises(ConfigError, match="sinfo does not answer"):
        run_sweep("tiny", launcher="slurm", profile="localhost")
    monkeypatch.setattr(slurm.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="sbatch is not on PATH"):
        run_sweep("tiny", launcher="slurm", profile="localhost")
    assert not isolated_runs.exists()


def test_a_search_space_is_not_a_grid_sweep(root):
    root.sweep("grid", **TINY)
    root.sweep("surface_space", text="experiment: t4_abstraction\nparams: {}\n")
    with pytest.raises(ConfigError, match="ra3lab tune surface"):
        run_sweep("surface_space", dry_run=True)
    with pytest.raises(ConfigError, match="choose one of grid$"):
        run_sweep("nowhere", dry_run=True)


def test_a_relaunch_leaves_runs_whose_job_is_still_queued(root, monkeypatch):
    root.sweep("tiny", **TINY)
    the_plan = plan("tiny")
    the_plan.sweep_dir.mkdir(parents=True)
    (the_plan.sweep_dir / "manifest.jsonl").write_text("".join(
        json.dumps({"index": i, "overrides": list(p.overrides), "params": p.params,
                    "experiment": "t1_regret_decomposition", "run_id": r.path.name, "run_dir": str(r.path),
                    "job_id": f"77_{i}"}) + "\n"
        for i, (p, r) in enumerate(zip(the_plan.points, the_plan.runs))))
    monkeypatch.setattr(slurm, "queued_jobs", lambda: {"77_0": "PENDING", "77_2": "PENDING"})
    summary = run_sweep("tiny", dry_run=True)
    assert summary["launch"] == [1, 3] and summary["runs"][0]["job"] == "77_0 (queued)"
