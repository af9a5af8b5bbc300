"""`ra3lab tune`: the ask/tell driver with local workers, on a small real study (T2 at tiny scale, ~1 s a trial).

Every test works in a copy of the project (RA3LAB_ROOT) so that spaces and exported best experiments
never touch the checkout.
"""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ra3lab.cli import main
from ra3lab.errors import ConfigError
from ra3lab.files import SPACES
from ra3lab.sweep.space import load_space
from ra3lab.sweep.storage import open_storage, open_study
from ra3lab.sweep.tune import enqueue_tickets, tune

REPO = Path(__file__).resolve().parents[1]

# T2 at tiny scale: 8 settings (one knob at a time, noise-free experts), one metrics line each
# (theory/t2/n_failing: the largest expert dataset at which pruning clearly fails, 0 if none); a frequency
# threshold of 0 or 0.001 keeps every observed decision, 0.12 drops goal corridors and fails longer from setting 1 on.
TINY = {
    "experiment": "t2_pruning",
    "quick": True,
    "fixed": ["rule=frequency", "+rule_kwargs.threshold=0.0", "noise_model=none", "design=axes", "trials=4",
              "env.n_tasks=4", "max_samples=256", "reveal_samples=2000"],
    "objective": {"metric": "theory/t2/n_failing", "reduce": "mean"},
    "direction": "minimize",
    "intermediate": "theory/t2/n_failing",
    "pruner": {"type": "median", "n_startup_trials": 2},
    "sampler": {"type": "tpe", "seed": 0},
    "trials": 4,
    "params": {"threshold": {"key": "rule_kwargs.threshold", "type": "float", "low": 0.001, "high": 0.15, "log": True}},
}


def make_project(tmp_path, monkeypatch, folders=("experiments", "envs", "sweeps")):
    """A copy of ``folders`` of the checkout as RA3LAB_ROOT; returns a writer of space files."""
    root = tmp_path / "project"
    for folder in folders:
        shutil.copytree(REPO / folder, root / folder)
    monkeypatch.setenv("RA3LAB_ROOT", str(root))

    def write(name: str, spec: dict) -> str:
        (root / "sweeps" / f"{name}_space.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        return name

    write.root = root
    return write


@pytest.fixture
def project(tmp_path, monkeypatch):
    return make_project(tmp_path, monkeypatch)


def variant(**changes) -> dict:
    """TINY with ``changes`` applied (``params_threshold`` replaces the param)."""
    spec = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if key == "params_threshold":
            spec["params"]["threshold"] = value
        else:
            spec[key] = value
    return spec


def finished_trials(name: str, url: str):
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return study, study.get_trials(deepcopy=False)


# --- the shipped spaces -------------------------------------------------------------------------

def test_shipped_spaces_load_and_their_bounds_validate():
    from ra3lab.sweep.space import check_bounds

    assert {"t4_switching", "t2_frequency"} <= set(SPACES.names())
    for name in ("t4_switching", "t2_frequency"):
        space = load_space(name)
        check_bounds(space)
        assert space.intermediate and space.pruner["type"] == "median"


# --- exactly N trials, no duplicates; the best trial as an experiment ------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_run_exactly_n_trials_and_export_a_runnable_best(project, isolated_runs, tmp_path, kind, capsys):
    name = project("tiny", TINY)
    url = None if kind == "sqlite" else f"journal:///{tmp_path}/tiny.log"
    summary = tune(name, url, 2, "local", None, 6)

    url = summary["storage"]
    assert url.startswith("sqlite:////" if kind == "sqlite" else "journal:///")
    study, trials = finished_trials(name, url)
    assert len(trials) == 6 and sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert summary["n_trials"]["counted"] == 6
    ran = sorted(n for worker in summary["workers"] for n in worker["trials"])
    assert ran == list(range(6)) and all(worker["trials"] for worker in summary["workers"])   # both workers worked
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(pids) == 2
    run_dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert len(set(run_dirs)) == 6                                                          # one run per trial
    for trial, run_dir in zip(trials, run_dirs):
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["tune"] == {"space": name, "trial": trial.number}
        assert config["rule_kwargs"]["threshold"] == trial.params["threshold"]

    assert study.best_trial.number == summary["best_trial"]
    # the best trial goes into the study's folder, not into the tracked experiments/, with the command that reruns it
    best_yaml = Path(summary["best_yaml"])
    assert best_yaml == isolated_runs / "tune" / name / "best.yaml"
    assert sorted(p.name for p in (project.root / "experiments").iterdir()) == sorted(
        p.name for p in (REPO / "experiments").iterdir())
    record = yaml.safe_load(best_yaml.read_text())
    command = summary["best_command"]
    assert record["command"] == command and record["params"] == summary["best_params"]
    assert f"Rerun it: {command}" in best_yaml.read_text() and f"Rerun it: {command}" in capsys.readouterr().err
    argv = shlex.split(command)
    assert argv[:4] == ["ra3lab", "run", "t2_pruning", "--quick"]
    assert main([*argv[1:], "--json"]) == 0
    rerun = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    config = yaml.safe_load((Path(rerun["run_dir"]) / "config.yaml").read_text())
    assert config["rule_kwargs"]["threshold"] == summary["best_params"]["threshold"]
    lines = [json.loads(line) for line in (Path(rerun["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    values = [line["theory/t2/n_failing"] for line in lines]
    assert sum(values) / len(values) == pytest.approx(summary["best_value"])   # same config, same numbers


def test_median_pruner_stops_a_bad_trial_after_its_intermediate_values(project):
    name = project("tiny", TINY)
    space = load_space(name)
    url = f"sqlite:///{project.root / 'prune.db'}"
    study = open_study(space, open_storage(url), create=True)
    for threshold in (0.001, 0.001, 0.12):             # two good startup trials, then one that drops goals
        study.enqueue_trial({"threshold": threshold})
    summary = tune(name, url, 1, "local", None, 3)

    _, trials = finished_trials(name, url)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = trials[2]
    assert 1 <= len(pruned.intermediate_values) < 8               # stopped before the 8 settings were done
    status = json.loads((Path(pruned.user_attrs["run_dir"]) / "status.json").read_text())
    assert status["state"] == "failed" and "TrialPruned" in status["error"]
    assert summary["n_trials"]["PRUNED"] == 1 and summary["best_trial"] in (0, 1)


KILLED_WORKER = """
import os, signal
from ra3lab.sweep.space import load_space
from ra3lab.sweep.storage import open_storage, open_study
from ra3lab.sweep.storage import claims_lock
from ra3lab.sweep.tune import claim, enqueue_tickets
space = load_space("tiny")
study = open_study(space, open_storage({url!r}))
enqueue_tickets(study, 4)
trial = claim(study, 4, claims_lock({url!r}))
print(trial.number, space.params[0].suggest(trial), flush=True)
os.kill(os.getpid(), signal.SIGKILL)   # a worker killed mid-trial: its trial stays RUNNING
"""


def test_interrupted_study_resumes_and_reasks_a_killed_workers_trial(project):
    name = project("tiny", variant(pruner={"type": "none"}))
    url = f"sqlite:///{project.root / 'resume.db'}"
    first = tune(name, url, 1, "local", None, 3)
    assert first["n_trials"]["COMPLETE"] == 3

    killed = subprocess.run([sys.executable, "-c", KILLED_WORKER.format(url=url)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr
    number, threshold = killed.stdout.split()
    _, trials = finished_trials(name, url)
    assert int(number) == 3 and trials[3].state == TrialState.RUNNING

    second = tune(name, url, 2, "local", None, 6)
    assert second["interrupted_now"] == [3]
    _, trials = finished_trials(name, url)
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert trials[3].user_attrs["interrupted"] is True
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 3]
    assert len(retry) == 1 and retry[0].params["threshold"] == pytest.approx(float(threshold))   # re-asked
    assert second["n_trials"]["counted"] == 6 and second["n_trials"]["interrupted"] == 1

    third = tune(name, url, 2, "local", None, 6)                 # nothing left: no worker starts
    assert third["workers"] == [] and third["n_trials"]["counted"] == 6


def test_an_objective_missing_from_the_summary_stops_the_worker_after_its_first_trial(project):
    # thm_3_5_verdicts is a summary key the source builds at run time: its sub-keys are checked on a trial
    name = project("nested", variant(objective="thm_3_5_verdicts.nope", intermediate=None))
    summary = tune(name, None, 1, "local", None, 2)
    assert summary["n_trials"]["FAIL"] == 1 and summary["n_trials"]["WAITING"] == 1
    assert not summary["workers"][0]["ok"] and "thm_3_5_verdicts.nope" in summary["workers"][0]["error"]
    assert summary["best_yaml"] is None


# --- every bad input is a ConfigError naming the field, before any work ----------------------------

BAD = [
    ("unknown param key", variant(params_threshold={"key": "rule_kwargs.nope", "type": "float", "low": 0.1,
                                                    "high": 0.2}), "bad.params.threshold.key"),
    ("param not a key", variant(params={"n_sigma": {"type": "int", "low": 1, "high": 2}}), "bad.params"),
    ("low >= high", variant(params_threshold={"key": "rule_kwargs.threshold", "type": "float", "low": 0.2,
                                              "high": 0.1}), "bad.params.threshold.low"),
    ("log with low <= 0", variant(params_threshold={"key": "rule_kwargs.threshold", "type": "float", "low": 0.0,
                                                    "high": 0.1, "log": True}), "bad.params.threshold.low"),
    ("unknown type", variant(params_threshold={"key": "rule_kwargs.threshold", "type": "uniform", "low": 0.0,
                                               "high": 0.1}), "bad.params.threshold.type"),
    ("unknown param field", variant(params_threshold={"key": "rule_kwargs.threshold", "type": "float", "low": 0.0,
                                                      "high": 0.1, "scale": "log"}), "bad.params.threshold.scale"),
    ("repeat on a scalar", variant(params_threshold={"key": "rule_kwargs.threshold", "type": "float", "low": 0.0,
                                                     "high": 0.1, "repeat": 2}), "bad.params.threshold.repeat"),
    ("bound the study rejects", variant(params_threshold={"key": "delta", "type": "float", "low": 0.1, "high": 1.5}),
     "bad.params.threshold.high"),
    ("unknown pruner", variant(pruner={"type": "asha"}), "bad.pruner.type"),
    ("unknown pruner argument", variant(pruner={"type": "median", "n_startup": 3}), "bad.pruner.n_startup"),
    ("unknown sampler", variant(sampler={"type": "cma"}), "bad.sampler.type"),
    ("unknown objective key", variant(objective="abstraction_final_regret"), "bad.objective"),
    ("unknown objective metric", variant(objective={"metric": "theory/t2/n_requird"}), "bad.objective.metric"),
    ("unknown reduce", variant(objective={"metric": "theory/t2/n_failing", "reduce": "median"}),
     "bad.objective.reduce"),
    ("unknown intermediate", variant(intermediate="theory/t4/surface/regret"), "bad.intermediate"),
    ("unknown direction", variant(direction="down"), "bad.direction"),
    ("unknown experiment", variant(experiment="t9_nothing"), "bad.experiment"),
    ("bad fixed override", variant(fixed=["no_such_key=1"]), "bad.fixed"),
    ("unknown top-level key", {**TINY, "grid": ["seed=0,1"]}, "bad.grid"),
    ("tuning keys under space:", {"experiment": "t2_pruning", "space": {"params": TINY["params"]}}, "bad.space"),
]


@pytest.mark.parametrize("case, spec, field", BAD, ids=[case[0] for case in BAD])
def test_bad_space_is_a_config_error_naming_the_field(project, isolated_runs, case, spec, field):
    name = project("bad", spec)
    with pytest.raises(ConfigError) as error:
        tune(name, None, 1, "local", None, 2)
    assert error.value.field == field, str(error.value)
    assert not (isolated_runs / "t2_pruning").exists() and not (isolated_runs / "tune" / "bad").exists()


@pytest.mark.parametrize("args, field", [
    ({"space": "no_such_space"}, "space"),
    ({"storage": "postgresql://ra3lab@127.0.0.1:1/optuna"}, "storage"),       # no server (or no driver)
    ({"storage": "journal:///no/such/folder/j.log"}, "storage"),
    ({"storage": "sqlite:///no/such/folder/s.db"}, "storage"),
    ({"storage": "study.db"}, "storage"),
    ({"storage": "sqlite://"}, "storage"),                                    # in memory: not shared
    ({"trials": 0}, "trials"),
    ({"workers": 0}, "workers"),
    ({"launcher": "ssh"}, "launcher"),
    ({"profile": "localhost"}, "profile"),                                    # a profile is for --launcher slurm
], ids=lambda value: json.dumps(value) if isinstance(value, dict) else value)
def test_bad_arguments_are_config_errors_before_any_work(project, isolated_runs, args, field):
    project("tiny", TINY)
    kwargs = {"space": "tiny", "storage": None, "workers": 1, "launcher": "local", "profile": None, "trials": 2, **args}
    with pytest.raises(ConfigError) as error:
        tune(**kwargs)
    assert error.value.field == field, str(error.value)
    assert not (isolated_runs / "t2_pruning").exists()


def test_a_changed_space_is_refused(project):
    project("tiny", TINY)
    url = f"sqlite:///{project.root / 'changed.db'}"
    open_study(load_space("tiny"), open_storage(url), create=True)
    project("tiny", variant(direction="maximize"))
    with pytest.raises(ConfigError, match="another definition of the space") as error:
        tune("tiny", url, 1, "local", None, 2)
    assert error.value.field == "space"


def test_runs_and_trials_share_one_rule_for_a_live_job(tmp_path, monkeypatch):
    """A job is alive while its SLURM job is queued (a requeued job has a new process), else while its
    process on this host lives; a sweep's run and a tuning trial are judged alike."""
    from ra3lab.sweep import slurm
    from ra3lab.sweep.status import run_state
    from ra3lab.sweep.tune import recover

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    cases = {   # name: (what the job recorded, squeue's answer, alive)
        "live process, squeue silent": ({"host": here, "pid": os.getpid(), "slurm_job_id": "904"}, None, True),
        "requeued": ({"host": here, "pid": dead.pid, "slurm_job_id": "903"}, {"903": "PENDING"}, True),
        "left the queue": ({"host": here, "pid": os.getpid(), "slurm_job_id": "904"}, {"903": "PENDING"}, False),
        "dead process": ({"host": here, "pid": dead.pid, "slurm_job_id": None}, None, False),
    }
    for name, (record, queued, alive) in cases.items():
        monkeypatch.setattr(slurm, "queued_jobs", lambda queued=queued: queued)
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "status.json").write_text(json.dumps({"state": "running", **record}))
        assert run_state(run_dir)["state"] == ("running" if alive else "interrupted"), name
        study = optuna.create_study()
        study.ask().set_user_attr("worker", record)
        assert recover(study) == ([] if alive else [0]), name


CLAIMER = """
import sys, time
import optuna
from ra3lab.sweep.storage import open_storage
from ra3lab.sweep.storage import claims_lock
from ra3lab.sweep.tune import claim
study = optuna.load_study(study_name="tiny", storage=open_storage({url!r}))
while time.time() < {start}:
    time.sleep(0.001)
numbers = []
while (trial := claim(study, {n}, claims_lock({url!r}))) is not None:
    numbers.append(trial.number)
print(" ".join(map(str, numbers)), flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_concurrent_claims_take_each_waiting_trial_once(project, kind):
    name = project("tiny", TINY)
    url = f"sqlite:///{project.root / 'claims.db'}" if kind == "sqlite" else f"journal:///{project.root / 'claims.log'}"
    study = open_study(load_space(name), open_storage(url), create=True)
    n = 24
    enqueue_tickets(study, n)
    start = time.time() + 6          # every claimer imports first, then all start at once
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER.format(url=url, n=n, start=start)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(3)]
    claimed = [int(x) for p in claimers for x in p.communicate(timeout=120)[0].split()]
    assert sorted(claimed) == list(range(n))                      # each ticket once, none lost


OPENER = """
import time
from ra3lab.sweep.storage import open_storage
while time.time() < {start}:
    time.sleep(0.001)
open_storage({url!r})
"""


def test_processes_opening_one_new_sqlite_file_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"    # the tables are created by whichever process comes first
    start = time.time() + 8
    openers = [subprocess.Popen([sys.executable, "-c", OPENER.format(url=url, start=start)],
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in openers]
    assert [p.returncode for p in openers] == [0] * 4, errors
    assert optuna.get_all_study_summaries(open_storage(url)) == []
