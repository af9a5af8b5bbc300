"""Training curves as TensorBoard event files: every training stage of the CodeWorld pipeline writes them under its
run directory while it trains, holding the values of its own records, and none with tracking.tensorboard=false."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ra3lab.config import compose_experiment
from ra3lab.execute import execute
from ra3lab.ra3 import em
from ra3lab.ra3.arms import Arm
from tests.test_midtraining import CODEWORLD

RLVR = ["tasks.train=8", "tasks.heldout=4", "rlvr.steps=2", "rlvr.group_size=2", "rlvr.prompts_per_step=2",
        "rlvr.max_new_tokens=24", "rlvr.beta=0.04", "rlvr.eval_every=1", "rlvr.save_every=2", "rlvr.timeout_s=2.0",
        "rlvr_eval.n=2", "rlvr_eval.k=[1]"]
TWO_ROUNDS = [*(o for o in CODEWORLD if not o.startswith("midtrain.rounds")), "midtrain.rounds=2"]


def curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the scalars in the event files of ``folder``."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def upstream(runs: Path, run_dir: Path, role: str) -> Path:
    return runs / OmegaConf.load(run_dir / "config.yaml").upstream[role]


def test_every_training_stage_writes_its_curves_with_the_values_it_records(isolated_runs, capfd):
    summary = execute("rlvr", compose_experiment("rlvr", [*TWO_ROUNDS, *RLVR, "arm=ra3_c0.05"]))
    assert "{'loss'" not in capfd.readouterr().out       # TRL's printer stays off: rows go to the stage's log
    rlvr_dir = Path(summary["run_dir"])
    midtrain_dir = upstream(isolated_runs, rlvr_dir, "model")
    pretrain_dir = upstream(isolated_runs, midtrain_dir, "base")

    pretrain = curves(pretrain_dir / "tensorboard" / "pretrain")["pretrain/loss"]     # every 10 of 30 steps
    assert [step for step, _ in pretrain] == [10, 20, 30]
    assert pretrain[-1][1] == pytest.approx(json.loads((pretrain_dir / "model" / "metrics.json").read_text())["loss"])

    arm = curves(midtrain_dir / "tensorboard" / "ra3_c0.05")
    _, rounds = em.last_round(Arm.parse("ra3_c0.05").folder(midtrain_dir))
    points = [em.estep_tags(point) for metrics in rounds for point in metrics["estep"]]     # 2 rounds of 2 steps
    assert {"estep/reward", "estep/loss", "rationale/rate", "rationale/length", "rationale/boundary_f1"} <= set(arm)
    for tag in points[0]:
        assert arm[tag] == [(step, pytest.approx(point[tag], rel=1e-6)) for step, point in enumerate(points)], tag
    assert arm["mstep/loss"] == [(4 * (k + 1), pytest.approx(metrics["mstep_loss"], rel=1e-6))
                                 for k, metrics in enumerate(rounds)]

    grpo = curves(rlvr_dir / "tensorboard" / "rlvr")
    rows = [json.loads(line) for line in (rlvr_dir / "metrics.jsonl").read_text().splitlines()]
    same = ("rlvr/truncated_fraction", "eval/pass@1/heldout", "eval/thought_rate/heldout")
    for tag, logged in {"train/reward": "rlvr/reward_mean", "train/kl": "rlvr/kl", **{t: t for t in same}}.items():
        expected = [(row["step"], pytest.approx(row[logged], rel=1e-6)) for row in rows if logged in row]
        assert grpo[tag] == expected and len(expected) >= 2, tag
    assert [step for step, _ in grpo["eval/pass@1/heldout"]] == [0, 1, 2]
    assert "rlvr/reward_mean" not in grpo           # TRL's own metrics come once, under TRL's names


def test_tracking_off_writes_no_event_files(isolated_runs):
    summary = execute("rlvr", compose_experiment("rlvr", [*CODEWORLD, *RLVR, "arm=ntp", "tracking.tensorboard=false"]))
    assert summary["steps"] == 2 and (isolated_runs / "pretrain").is_dir() and (isolated_runs / "midtrain").is_dir()
    assert not list(isolated_runs.rglob("tensorboard")) and not list(isolated_runs.rglob("events.out.tfevents*"))
