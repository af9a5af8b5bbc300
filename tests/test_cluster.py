"""The local SLURM cluster of `make slurm-up`, driven through submitit as the sweeps drive it.

Marked `cluster`: conftest.py hands these tests the `slurm_cluster` fixture, which skips them
(with the reason) where SLURM is absent. Every wait is bounded, so a broken cluster fails fast
instead of hanging. Job functions are stdlib functions: submitit pickles them by reference, so
they must be importable on the node (a function defined in this module would not be).
"""

import math
import subprocess
import threading
import time

import pytest
import submitit

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("slurm")]   # one at a time: they share 2 CPUs


def _executor(folder):
    # submitit asks SLURM for its timeout signal (USR2) 90 s before the time limit, and SLURM may
    # send it up to 60 s early (`man sbatch`, --signal): with a 2-minute limit that is at the
    # job's start. 15 s puts it at 45 s or later, past the life of every job here.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=2, cpus_per_task=1, slurm_signal_delay_s=15)
    return executor


def _bounded(function, timeout_s):
    """function() run in a daemon thread: its result, or its exception raised; fails past timeout_s."""
    outcome = {}

    def target():
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)  # a hung wait cannot block pytest's exit
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"{function} still waiting after {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _sacct_state(job, timeout_s, until):
    """Force sacct reads of `job` until `until(state)` holds; returns the last state seen."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = job.get_info(mode="force").get("State", "")
        if until(state):
            return state
        time.sleep(0.5)
    pytest.fail(f"job {job.job_id}: state still {state!r} after {timeout_s} s")


def _squeue_states(job_ids):
    out = subprocess.run(
        ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _scancel(*jobs):
    subprocess.run(["scancel", *[job.job_id for job in jobs]], check=False, capture_output=True, timeout=10)


def test_trivial_job_returns_and_is_accounted_completed(tmp_path):
    job = _executor(tmp_path).submit(math.factorial, 10)
    assert _bounded(job.result, 60) == 3628800
    # The result file comes first; sacct (slurmdbd) then records the final state.
    _sacct_state(job, 30, lambda state: state == "COMPLETED")
    assert job.state == "COMPLETED"


def test_cancelled_job_is_seen_as_cancelled(tmp_path):
    job = _executor(tmp_path).submit(time.sleep, 100)
    try:
        _sacct_state(job, 60, lambda state: state == "RUNNING")
        subprocess.run(["scancel", job.job_id], check=True, timeout=10)
        # job.result() must end (submitit asks sacct), raising instead of hanging.
        with pytest.raises(submitit.core.utils.UncompletedJobError):
            _bounded(job.result, 90)
        assert job.state.startswith("CANCELLED")
        assert job.done()
    finally:
        _scancel(job)


def test_two_one_cpu_jobs_run_at_once(tmp_path):
    executor = _executor(tmp_path)
    jobs = [executor.submit(time.sleep, 60) for _ in range(2)]  # cancelled once both are seen
    ids = [job.job_id for job in jobs]
    try:
        deadline = time.monotonic() + 40  # other tests' jobs may hold a CPU for a few seconds
        states = {}
        while time.monotonic() < deadline:
            states = _squeue_states(ids)
            if [states.get(i) for i in ids] == ["RUNNING", "RUNNING"]:
                break
            time.sleep(0.5)
        assert [states.get(i) for i in ids] == ["RUNNING", "RUNNING"], states
    finally:
        _scancel(*jobs)
