"""Shared fixtures: every test writes runs into its own temporary folder; the tiny model that thinks, built
once per test process; tests marked `cluster` get the local SLURM cluster (or are skipped, with the reason,
where there is none)."""

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # `make test` runs two pytest workers on two cores: one thread each


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path, monkeypatch):
    """Point RA3LAB_RUNS at a fresh folder so tests never see or touch the user's runs/."""
    monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def thinking_model():
    """(model, tokenizer, codec): a tiny Llama (hidden 32, 2 layers) pre-trained on 120 CodeWorld programs that
    carry an intent comment before every skill, each ending with eos, so that it thinks and knows where a
    function ends. Shared by every test of a process: tests must not train it in place."""
    from ra3lab.codeworld import CodeWorld
    from ra3lab.lm import LineCodec, build_model, train_ntp, train_tokenizer

    programs = CodeWorld(comment_fraction=1.0).sample(120, seed=0)
    tokenizer = train_tokenizer([line for p in programs for line in p.lines()], vocab_size=320)
    codec = LineCodec(tokenizer)
    model = build_model(tokenizer, hidden=32, layers=2, heads=2, seed=0)
    train_ntp(model, [codec.encode_lines(p.lines())[0] + [codec.eos_id] for p in programs], steps=80, batch_size=16,
              lr=1e-2)
    return model, tokenizer, codec


# --- the local SLURM cluster (`make slurm-up`), for tests marked `cluster` -------------------

LOCAL_SLURM_CONF = Path(__file__).resolve().parents[1] / ".slurm" / "etc" / "slurm.conf"
ABSENT = "SLURM is absent: run `make slurm-up` (CI starts it)"


@pytest.fixture(scope="session")
def slurm_cluster():
    """Path of the slurm.conf of a cluster that answers; skips the test where there is none.

    Uses $SLURM_CONF, else the cluster of `make slurm-up` in <repo>/.slurm/ (exported into
    os.environ for the session, so sbatch/sacct, and so submitit, find it). Under CI (CI=true),
    which starts the cluster first, an absent cluster fails the test instead of skipping it.
    """
    saved = os.environ.get("SLURM_CONF")

    def restore():
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved

    if not saved and LOCAL_SLURM_CONF.exists():
        os.environ["SLURM_CONF"] = str(LOCAL_SLURM_CONF)
    problem = None
    if shutil.which("sinfo") is None:
        problem = "no sinfo on PATH"
    else:
        try:
            subprocess.run(["sinfo", "-h"], check=True, capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            problem = "sinfo did not answer within 5 s: is the controller down?"
        except subprocess.CalledProcessError as error:
            problem = f"sinfo failed: {error.stderr.strip()[:300]}"
    if problem:
        restore()
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"{ABSENT} ({problem})")
    yield os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"  # SLURM's own default otherwise
    restore()


@pytest.fixture(autouse=True)
def _cluster_marker(request):
    """Tests marked `cluster` get `slurm_cluster` (so they skip, with the reason, without SLURM) and run
    one at a time on it, whichever pytest worker runs them: each holds an exclusive lock on the cluster
    (its two CPUs are what they measure and wait on)."""
    if not request.node.get_closest_marker("cluster"):
        yield
        return
    conf = request.getfixturevalue("slurm_cluster")
    name = f"ra3lab-cluster-tests-{hashlib.sha1(conf.encode()).hexdigest()[:12]}.lock"
    with open(Path(tempfile.gettempdir()) / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, after the test
        yield
