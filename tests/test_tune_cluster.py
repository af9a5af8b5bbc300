"""`ra3lab tune --launcher slurm`: workers as SLURM array tasks on the local cluster of `make slurm-up`.

Marked `cluster` (skipped, with the reason, where SLURM is absent). The workers share one storage
(SQLite file, or Optuna's journal file) and must run exactly N trials between them, at the same time.
"""

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_tune import TINY, make_project, variant

from ra3lab.sweep.storage import open_storage
from ra3lab.sweep.tune import tune

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("slurm")]   # one at a time: they share 2 CPUs


@pytest.fixture
def cluster_project(tmp_path, monkeypatch):
    """A project copy with slurm/profiles (the `localhost` profile: 2 array tasks at once, 1 CPU each)."""
    return make_project(tmp_path, monkeypatch, ("experiments", "envs", "sweeps", "slurm/profiles"))


def wait_for_idle_queue(timeout_s: float = 240) -> None:
    """Wait until no job is queued, so that our two array tasks get the node's two CPUs at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=20, check=False)
        if out.returncode == 0 and not out.stdout.strip():
            return
        time.sleep(2)
    pytest.fail(f"the cluster's queue is still busy after {timeout_s} s: {out.stdout[:300]}")


def overlapping(trials) -> bool:
    """Whether two trials run by different SLURM jobs overlap in time."""
    spans = [(t.user_attrs["worker"]["slurm_job_id"], t.datetime_start, t.datetime_complete) for t in trials]
    return any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for i, a in enumerate(spans) for b in spans[i + 1:])


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_slurm_workers_share_one_storage_without_lost_or_duplicated_trials(cluster_project, tmp_path, kind):
    name = cluster_project("tiny", variant(pruner={"type": "none"}))
    url = None if kind == "sqlite" else f"journal:///{tmp_path}/tiny.log"
    wait_for_idle_queue()
    summary = tune(name, url, 2, "slurm", "localhost", 8, timeout_s=400)

    assert all(worker["ok"] for worker in summary["workers"]), summary["workers"]
    job_ids = [worker["job_id"] for worker in summary["workers"]]
    assert len(set(job_ids)) == 2 and all(job_ids)
    study = optuna.load_study(study_name=name, storage=open_storage(summary["storage"]))
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(8))                      # no lost or extra trial
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(n for worker in summary["workers"] for n in worker["trials"]) == list(range(8))   # none twice
    assert len({t.user_attrs["run_dir"] for t in trials}) == 8 and all(Path(t.user_attrs["run_dir"]).is_dir()
                                                                       for t in trials)
    slurm_jobs = {t.user_attrs["worker"]["slurm_job_id"] for t in trials}
    assert len(slurm_jobs) == 2 and None not in slurm_jobs                             # both array tasks worked
    assert overlapping(trials), [(t.number, t.datetime_start, t.datetime_complete) for t in trials]
    assert Path(summary["best_yaml"]).exists()


def test_a_killed_slurm_workers_trial_is_failed_and_reasked_on_restart(cluster_project, tmp_path):
    slow = [*TINY["fixed"][:4], "trials=20", "env.n_tasks=16", "max_samples=1024"]   # ~3 s a trial
    name = cluster_project("slow", variant(pruner={"type": "none"}, fixed=slow))
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    wait_for_idle_queue()
    result = {}
    driver = threading.Thread(target=lambda: result.update(tune(name, url, 1, "slurm", "localhost", 4, timeout_s=300)))
    driver.start()
    storage, deadline, victim = open_storage(url), time.monotonic() + 240, None
    while victim is None and time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if (t.user_attrs.get("worker") or {}).get("slurm_job_id")]
        except KeyError:   # the study is not created yet
            running = []
        if running and running[0].number >= 1:      # one trial finished: kill the worker mid-way
            victim = running[0]
        time.sleep(0.2)
    assert victim is not None, "no trial started on SLURM within 240 s"
    # Kill the worker's process mid-trial, as the OOM killer or a node failure would. (scancel would not do:
    # submitit lets the job bypass SIGTERM, and it goes on for seconds, possibly past the trial.)
    worker = victim.user_attrs["worker"]
    assert worker["host"] == socket.gethostname()                        # the single-node test cluster
    os.kill(worker["pid"], signal.SIGKILL)
    driver.join(360)
    assert not driver.is_alive() and not result["workers"][0]["ok"]
    left = optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.RUNNING,))
    assert [t.number for t in left] == [victim.number] and result["n_trials"]["RUNNING"] == 1
    killed = left[0]

    second = tune(name, url, 1, "slurm", "localhost", 4, timeout_s=300)
    assert second["interrupted_now"] == [killed.number]
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    assert trials[killed.number].state == TrialState.FAIL and trials[killed.number].user_attrs["interrupted"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == killed.params
    assert second["n_trials"]["counted"] == 4 and second["n_trials"]["COMPLETE"] == 4
