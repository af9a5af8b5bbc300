"""Stages as runs: ids from a stage's own keys plus its upstream ids, lineage as relative ids, a cycle refused,
one computation of a shared upstream by two processes, and sweeps over stages as a DAG (locally and on the
local SLURM cluster) that marks the dependants of a failed run blocked and relaunches only what is missing."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ra3lab.cli import main, render_sweep
from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.lm import build_model, load_model, load_tokenizer, train_tokenizer
from ra3lab.stages import downstream, order, plan
from ra3lab.studies.stages import as_stage
from ra3lab.sweep.grid import run_sweep
from ra3lab.sweep.status import sweep_status

TOY = {"toy_base": "base", "toy_top": "top"}


@pytest.fixture
def toy_root(tmp_path, monkeypatch, isolated_runs):
    """A project root with the two toy stage experiments and a sweep of 2 labels x 2 values over ``toy_top``."""
    root = tmp_path / "project"
    for folder in ("experiments", "envs", "sweeps", "slurm"):
        (root / folder).mkdir(parents=True)
    for name, kind in TOY.items():
        (root / "experiments" / f"{name}.yaml").write_text(
            f"# @package _global_\n# toy stage {kind}\nstudy: tests.toy_stages\nseed: 0\nkind: {kind}\nvalue: 1\n"
            "label: a\nsleep_s: 0.0\nunused: 0\n")
    (root / "sweeps" / "toy_dag.yaml").write_text(
        "# 2 labels x 2 values over the top stage: 2 base runs, 4 top runs\nexperiment: toy_top\n"
        "grid:\n  - label=a,bb\n  - value=1,2\n")
    (root / "sweeps" / "toy_unused.yaml").write_text("# an axis no stage reads\nexperiment: toy_top\n"
                                                     "grid:\n  - label=a,bb\n  - unused=1,2\n")
    shutil.copytree(Path(__file__).resolve().parents[1] / "slurm" / "profiles", root / "slurm" / "profiles")
    monkeypatch.setenv("RA3LAB_ROOT", str(root))
    return root


def base_runs(runs: Path) -> list[str]:
    path = runs / "base_runs"
    return path.read_text().split() if path.exists() else []


def test_a_stage_id_depends_on_its_own_keys_and_its_upstream_ids(toy_root):
    top = plan("toy_top", compose_experiment("toy_top"))
    relabelled = plan("toy_top", compose_experiment("toy_top", ["label=bb"]))
    revalued = plan("toy_top", compose_experiment("toy_top", ["value=2"]))
    assert relabelled.upstream["base"].id == top.upstream["base"].id     # label is not a key of base
    assert relabelled.id != top.id
    assert revalued.upstream["base"].id != top.upstream["base"].id and revalued.id != top.id
    assert "label" not in top.upstream["base"].config and top.config.upstream.base == top.upstream["base"].id
    assert [node.experiment for node in order([top, relabelled])] == ["toy_base", "toy_top", "toy_top"]


def test_lineage_is_stored_as_relative_ids_and_shown_both_ways(toy_root, isolated_runs, capsys):
    summary = execute("toy_top", compose_experiment("toy_top", ["label=ccc"]))
    assert summary["result"] == 2 + 3
    run_dir = Path(summary["run_dir"])
    stored = OmegaConf.load(run_dir / "config.yaml")
    base_id = str(stored.upstream.base)
    assert base_id.startswith("toy_base/") and not Path(base_id).is_absolute()
    assert json.loads((run_dir / "provenance.json").read_text())["upstream"] == {"base": base_id}
    assert downstream(isolated_runs, base_id) == [f"toy_top/{run_dir.name}"]
    assert base_runs(isolated_runs) == [base_id.split("/")[1]]
    assert main(["show", base_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["state"] == "done" and shown["downstream"] == {f"toy_top/{run_dir.name}": "done"}
    assert main(["show", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["upstream"] == {"base": [base_id, "done"]}
    assert main(["show", "toy_top/nothing", "--json"]) == 2


def test_the_codeworld_pipeline_shares_the_ntp_arm_across_thought_lengths():
    ids = {length: plan("rlvr", compose_experiment("rlvr", [f"arm={arm}", f"estep.max_thought_tokens={length}"]),
                        validate=False)
           for arm in ("ntp",) for length in (4, 8)}
    ra3 = {length: plan("rlvr", compose_experiment("rlvr", ["arm=ra3_c0.05", f"estep.max_thought_tokens={length}"]),
                        validate=False) for length in (4, 8)}
    assert ids[4].id == ids[8].id                                    # NTP reads no estep key
    assert ra3[4].upstream["model"].id != ra3[8].upstream["model"].id
    assert ra3[4].upstream["model"].upstream["base"].id == ids[4].upstream["model"].upstream["base"].id
    untracked = plan("rlvr", compose_experiment("rlvr", ["arm=ntp", "tracking.tensorboard=false"]), validate=False)
    assert untracked.id == ids[4].id                                 # where a run reports is not what it computes
    changed = plan("rlvr", compose_experiment("rlvr", ["arm=ntp", "model.hidden=64"]), validate=False)
    assert changed.upstream["model"].upstream["base"].id != ids[4].upstream["model"].upstream["base"].id
    assert changed.id != ids[4].id                                   # a changed upstream changes every id below


def test_the_real_corpus_study_is_the_same_stages_over_another_source():
    top = plan("ra3_corpus", compose_experiment("ra3_corpus"))
    assert sorted(top.upstream) == ["eval_base", "eval_ntp", "eval_ra3_c0.05", "train_base", "train_ntp",
                                    "train_ra3_c0.05"]
    ntp = top.upstream["train_ntp"]
    assert ntp.experiment == "midtrain" and "corpus" in ntp.config and "env" not in ntp.config
    assert ntp.upstream["base"].experiment == "pretrain" and "eval" not in ntp.upstream["base"].config
    more_tasks = plan("ra3_corpus", compose_experiment("ra3_corpus", ["eval.limit=32"]))
    assert more_tasks.upstream["train_ntp"].id == ntp.id                   # evaluation is not training
    assert more_tasks.upstream["eval_ntp"].id != top.upstream["eval_ntp"].id
    other_files = plan("ra3_corpus", compose_experiment("ra3_corpus", ["corpus.max_files=50"]))
    assert other_files.upstream["train_ntp"].upstream["base"].id != ntp.upstream["base"].id
    with pytest.raises(ConfigError) as error:                               # no intents to render in real code
        plan("midtrain", as_stage(compose_experiment("ra3_corpus"), "midtrain", arm="oracle"))
    assert error.value.field == "arm"


def test_codeworld_plan_feeds_the_same_stages_its_families():
    from ra3lab.studies.stages.sources import PlanSource, source_of

    config = compose_experiment("rlvr", ["env=codeworld_plan", "arm=ntp", "data.pretrain=60", "data.midtrain=20",
                                         "data.heldout=8"])
    source = source_of(config)
    world = instantiate(config.env)
    assert isinstance(source, PlanSource)
    assert {name for p in source.programs("pretrain") for name in p.skills} == set(world.skills)        # all of Z
    midtrain, heldout = source.programs("midtrain"), source.programs("heldout")
    assert {name for p in midtrain for name in p.skills} <= set(world.family)                          # Z_eps only
    assert {world.family_of(p) for p in midtrain} <= set(world.families("train"))
    assert {world.family_of(p) for p in heldout} <= set(world.families("heldout"))                     # unseen plans
    assert len(source.midtraining().snippets) == 20 and len(source.tasks()[0]) == 8
    top = plan("rlvr", config)
    codeworld = plan("rlvr", compose_experiment("rlvr", ["arm=ntp"]))
    assert top.upstream["model"].upstream["base"].id != codeworld.upstream["model"].upstream["base"].id
    # the base model does not read the mid-training corpus: a sweep over |D_E| pre-trains it once
    bigger = plan("rlvr", OmegaConf.merge(config, {"data": {"midtrain": 40}}))
    assert bigger.upstream["model"].upstream["base"].id == top.upstream["model"].upstream["base"].id
    assert bigger.upstream["model"].id != top.upstream["model"].id
    assert world.dsl_library in source.tasks()[0][0]["test"]                  # a DSL body runs as its plan's code


def test_a_named_model_becomes_the_base_stage_as_a_pinned_copy(tmp_path, isolated_runs):
    tokenizer = train_tokenizer(["def f(x):", "    return x + 1"] * 20, vocab_size=280)
    original = build_model(tokenizer, hidden=16, layers=1, heads=2)
    original.save_pretrained(tmp_path / "named")
    tokenizer.save_pretrained(tmp_path / "named")
    config = compose_experiment("ra3_corpus", [f"model.name={tmp_path / 'named'}", "corpus.max_files=10"])
    base = plan("ra3_corpus", config).upstream["train_ntp"].upstream["base"]
    summary = execute("pretrain", as_stage(config, "pretrain"))
    copy = load_model(isolated_runs / summary["model"])
    assert summary["parameters"] == original.num_parameters() and Path(summary["run_dir"]).name == base.run_id
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), copy.state_dict().values()))
    assert load_tokenizer(isolated_runs / summary["model"]).get_vocab() == tokenizer.get_vocab()


def test_a_sweep_axis_that_no_stage_reads_is_refused_before_anything_runs(toy_root, isolated_runs):
    with pytest.raises(ConfigError, match="no stage of toy_top depends on unused") as error:
        run_sweep("toy_unused")
    assert error.value.field == "grid" and not (isolated_runs / "toy_base").exists()


def test_a_dependency_cycle_is_refused(toy_root, monkeypatch):
    import tests.toy_stages as toy

    monkeypatch.setattr(toy, "upstream", lambda config: {"again": ("toy_top", config)})
    with pytest.raises(ConfigError, match="cycle: toy_top -> toy_top"):
        plan("toy_top", compose_experiment("toy_top"))


def _execute_top(root: str, runs: str, label: str) -> str:
    import os

    os.environ["RA3LAB_ROOT"], os.environ["RA3LAB_RUNS"] = root, runs
    from ra3lab.config import compose_experiment
    from ra3lab.execute import execute

    return execute("toy_top", compose_experiment("toy_top", [f"label={label}", "sleep_s=1.5"]))["run_dir"]


def test_two_processes_needing_the_same_missing_upstream_compute_it_once(toy_root, isolated_runs):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        done = pool.starmap(_execute_top, [(str(toy_root), str(isolated_runs), label) for label in ("a", "bb")])
    assert len(set(done)) == 2 and len(base_runs(isolated_runs)) == 1


def test_a_local_dag_sweep_blocks_dependants_of_a_failure_and_relaunch_runs_only_what_is_missing(
        toy_root, isolated_runs, capsys):
    (isolated_runs).mkdir(parents=True, exist_ok=True)
    (isolated_runs / "base_fails").write_text("")
    first = run_sweep("toy_dag", workers=2)
    assert first["n_stage_runs"] == 6 and len(base_runs(isolated_runs)) == 2
    assert sorted(run["state"] for run in first["runs"]) == ["blocked"] * 4
    render_sweep(first)
    shown = capsys.readouterr().out
    assert shown.count("blocked") >= 4 and len([line for line in shown.splitlines()
                                                if line.startswith("toy_base/") and " failed: " in line]) == 2
    status = sweep_status(Path(first["sweep_dir"]))
    assert status["stages"] == {"toy_base": "2 runs: 2 failed", "toy_top": "4 runs: 4 blocked"}
    assert all(run["error"].startswith("blocked: toy_base/") and run["error"].endswith(" failed")
               for run in status["runs"])
    (isolated_runs / "base_fails").unlink()
    second = run_sweep("toy_dag", workers=2)
    assert second["line"] == "4 runs: 4 done" and len(base_runs(isolated_runs)) == 4    # each base once more
    results = sorted(json.loads((Path(run["run_dir"]) / "summary.json").read_text())["result"]
                     for run in second["runs"])
    assert results == [3, 4, 5, 6]                        # 2 * value + len(label)
    third = run_sweep("toy_dag", workers=2)
    assert third["launch"] == [] and len(base_runs(isolated_runs)) == 4


def test_a_dag_sweep_dry_run_on_slurm_shows_one_array_per_level_with_afterok(toy_root, capsys):
    summary = run_sweep("toy_dag", launcher="slurm", profile="localhost", dry_run=True)
    assert {depth: sorted({run.split("/")[0] for run in runs}) for depth, runs in summary["levels"].items()} \
        == {0: ["toy_base"], 1: ["toy_top"]}
    assert (len(summary["levels"][0]), len(summary["levels"][1])) == (2, 4)
    assert "--kill-on-invalid-dep=yes" in summary["sbatch"]["level 0"]
    assert "--dependency='afterok:<level 0 array>'" in summary["sbatch"]["level 1"]
    assert "--dependency" not in summary["sbatch"]["level 0"] and summary["tasks"] == {0: 2, 1: 2}
    assert "--array=0-1%2" in summary["sbatch"]["level 1"]       # never more tasks than run at once: 2 runs each
    assert main(["sweep", "toy_dag", "--launcher", "slurm", "--profile", "localhost", "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "would launch 6 of 6 stage runs (4 points), one array per level" in shown
    assert shown.count("toy_top/") == 4 and "level 1: would submit an array job of 2 task(s) for 4 run(s)" in shown


def level_runs(experiment: str, overrides: list[list[str]]) -> list[dict]:
    """A level's runs as a SLURM level task receives them."""
    nodes = [plan(experiment, compose_experiment(experiment, o)) for o in overrides]
    return [{"experiment": n.experiment, "config": OmegaConf.to_container(n.config, resolve=True)} for n in nodes]


def test_a_level_task_runs_its_share_then_what_no_task_started_and_fails_at_the_end(toy_root, isolated_runs):
    from ra3lab.sweep.dag import LevelTask

    bases = level_runs("toy_base", [[f"value={v}"] for v in range(4)])
    first = LevelTask()(bases, 0, 2, str(isolated_runs))                   # its share (0, 2), then 1 and 3
    assert len(first["runs"]) == 4 and len(base_runs(isolated_runs)) == 4
    second = LevelTask()(bases, 1, 2, str(isolated_runs))                  # its share is done: nothing computed
    assert len(second["runs"]) == 2 and len(base_runs(isolated_runs)) == 4
    tops = level_runs("toy_top", [["value=0"], ["value=9"], ["value=1"]])  # value 9: its base never ran
    with pytest.raises(RuntimeError, match="1 of the task's runs failed: toy_top/") as error:
        LevelTask()(tops, 0, 1, str(isolated_runs))
    assert "upstream.base" in str(error.value)
    done = [(isolated_runs / "toy_top" / plan("toy_top", compose_experiment("toy_top", [o])).run_id / "summary.json")
            .exists() for o in ("value=0", "value=9", "value=1")]
    assert done == [True, False, True]                                     # the failure stopped nothing after it


@pytest.mark.cluster
def test_a_dag_sweep_on_slurm_runs_each_stage_once_and_relaunches_only_what_is_missing(toy_root, isolated_runs):
    (isolated_runs).mkdir(parents=True, exist_ok=True)
    (isolated_runs / "base_fails").write_text("")
    first = run_sweep("toy_dag", launcher="slurm", profile="localhost", timeout_s=240)
    assert sorted(run["state"] for run in first["runs"]) == ["blocked"] * 4
    stages = [json.loads(line) for line in (Path(first["sweep_dir"]) / "stages.jsonl").read_text().splitlines()]
    assert {entry["level"] for entry in stages} == {0, 1} and all(entry["job_id"] for entry in stages)
    (isolated_runs / "base_fails").unlink()
    second = run_sweep("toy_dag", launcher="slurm", profile="localhost", timeout_s=240)
    assert second["line"] == "4 runs: 4 done" and len(base_runs(isolated_runs)) == 4


RLVR_TINY = ["tasks.train=8", "tasks.heldout=4", "rlvr.steps=2", "rlvr.group_size=2", "rlvr.prompts_per_step=2",
             "rlvr.max_new_tokens=24", "rlvr.eval_every=1", "rlvr.save_every=1", "rlvr.timeout_s=2.0", "rlvr_eval.n=2"]


@pytest.mark.slow
def test_tuning_an_rlvr_objective_shares_the_pretrained_base_across_trials(tmp_path, monkeypatch, isolated_runs):
    from ra3lab.sweep.tune import tune
    from tests.test_midtraining import CODEWORLD

    checkout = Path(__file__).resolve().parents[1]
    root = tmp_path / "project"
    for folder in ("experiments", "envs"):
        shutil.copytree(checkout / folder, root / folder)
    fixed = "".join(f"  - {override}\n" for override in [*CODEWORLD, *RLVR_TINY] if not override.startswith("cs="))
    (root / "sweeps").mkdir()
    (root / "sweeps" / "tiny_auc_space.yaml").write_text(
        "# tiny RLVR AUC over the RA3 arm\nexperiment: rlvr\nfixed:\n" + fixed + "objective: auc\n"
        "direction: maximize\nintermediate: eval/pass@1/heldout\npruner: {type: none}\n"
        "sampler: {type: random, seed: 0}\n"
        "trials: 3\nparams:\n  arm: {type: categorical, choices: [ra3_c0.01, ra3_c0.05, ra3_c0.2]}\n")
    monkeypatch.setenv("RA3LAB_ROOT", str(root))
    summary = tune("tiny_auc", workers=1)
    assert summary["n_trials"]["COMPLETE"] == 3
    assert len(list((isolated_runs / "pretrain").iterdir())) == 1          # one base for every trial
    aucs = [json.loads(path.read_text())["auc"] for path in (isolated_runs / "rlvr").glob("*/summary.json")]
    assert 1 <= len(aucs) <= 3 and summary["best_value"] == max(aucs)
    assert Path(summary["best_run_dir"]).parent.name == "rlvr"


@pytest.mark.slow
def test_the_penalty_budget_sweep_runs_its_dag_once_and_feeds_the_heatmap_and_curves(tmp_path):
    from ra3lab.plots import paper
    from tests.test_midtraining import CODEWORLD

    tiny = [o for o in CODEWORLD if not o.startswith(("cs=", "references=", "estep.max_thought_tokens"))]
    axes = ["arm=ra3_c0.05,ra3_c0.2", "estep.max_thought_tokens=4,8", "rlvr.seed=0"]
    summary = run_sweep("ra3_penalty_budget", [*tiny, *RLVR_TINY, *axes], workers=2)
    assert summary["line"] == "4 runs: 4 done" and summary["n_stage_runs"] == 1 + 4 + 4
    levels = {row["experiment"]: row["level"] for row in summary["stages"]}
    assert levels == {"pretrain": 0, "midtrain": 1, "rlvr": 2}
    sweep_dir = Path(summary["sweep_dir"])
    heat = paper.heatmap(sweep_dir, tmp_path, "arm", "estep.max_thought_tokens", "auc")
    assert len(heat["cells"]) == 4 and all(cell["n"] == 1 for cell in heat["cells"])
    curves = paper.sweep_curves(sweep_dir)
    assert set(curves["task_set"]) == {"L_z=4", "L_z=8"} and set(curves["init"]) == {"ra3_c0.05", "ra3_c0.2"}
    assert all(Path(path).exists() for path in paper.convergence(sweep_dir, tmp_path, threshold=0.2)["figures"])
    again = run_sweep("ra3_penalty_budget", [*tiny, *RLVR_TINY, *axes], workers=2)
    assert again["launch"] == []


def test_a_killed_stage_sweep_relaunched_runs_only_what_is_missing(toy_root, isolated_runs):
    import os
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "ra3lab.cli", "sweep", "toy_dag", "sleep_s=4", "--workers", "1"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(base_runs(isolated_runs)) < 2 and time.monotonic() < deadline:   # the second base is running
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)                                   # kill -9 the sweep and its workers
    process.wait()
    killed = base_runs(isolated_runs)
    assert len(killed) == 2
    sweep_dir = next((isolated_runs / "sweeps" / "toy_dag").iterdir())
    deadline = time.monotonic() + 30                                         # until the killed worker is reaped
    while "interrupted" not in sweep_status(sweep_dir)["stages"]["toy_base"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sweep_status(sweep_dir)["stages"]["toy_base"] == "2 runs: 1 done, 1 interrupted"
    again = run_sweep("toy_dag", ["sleep_s=4"], workers=2)
    assert again["line"] == "4 runs: 4 done"
    assert sorted(run.split("/")[0] for run in again["launch"]) == ["toy_base", *["toy_top"] * 4]
    assert base_runs(isolated_runs) == [*killed, killed[1]]                 # only the interrupted base again


@pytest.mark.cluster
def test_two_slurm_jobs_needing_the_same_missing_upstream_compute_it_once(toy_root, isolated_runs, tmp_path):
    from ra3lab.sweep.job import RunJob
    from ra3lab.sweep.launch import submit

    kwargs = [{"experiment": "toy_top", "overrides": [f"label={label}", "sleep_s=3"], "quick": False,
               "runs_root": str(isolated_runs)} for label in ("a", "bb")]
    outcomes = submit(RunJob(), kwargs, launcher="slurm", profile="localhost", folder=tmp_path / "jobs" / "%j",
                      job_name="ra3lab-lock-test").wait(timeout_s=240)
    assert all(outcome.ok for outcome in outcomes), [outcome.error for outcome in outcomes]
    assert len(base_runs(isolated_runs)) == 1


@pytest.mark.cluster
def test_a_stage_job_killed_on_slurm_is_relaunched_with_only_what_is_missing(toy_root, isolated_runs):
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "ra3lab.cli", "sweep", "toy_dag", "sleep_s=6", "--launcher", "slurm",
               "--profile", "localhost", "--timeout", "300"]
    sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(base_runs(isolated_runs)) < 1 and time.monotonic() < deadline:   # a base job is computing
        time.sleep(0.5)
    running = base_runs(isolated_runs)[0]
    job = json.loads((isolated_runs / "toy_base" / running / "status.json").read_text())["slurm_job_id"]
    subprocess.run(["scancel", "--signal=KILL", job], check=True, timeout=20)    # kill -9 of that job's process
    assert sweep.wait(timeout=300) == 1                                        # its dependants never ran
    again = run_sweep("toy_dag", ["sleep_s=6"], launcher="slurm", profile="localhost", timeout_s=300)
    assert again["line"] == "4 runs: 4 done"
    relaunched = [run.split("/")[0] for run in again["launch"]]
    assert relaunched.count("toy_base") == 1 and relaunched.count("toy_top") == 4
    assert base_runs(isolated_runs).count(running) == 2 and len(base_runs(isolated_runs)) == 3
