"""Training curves as TensorBoard event files: every training stage of the CodeWorld pipeline writes them under its
run directory while it trains, holding the values of its own records, and none with tracking.tensorboard=false;
with tracking.wandb=offline each trainer's curves are also in an offline W&B run in its run directory."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb.proto.wandb_internal_pb2 import Record

from ra3lab.cli import main
from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.ra3 import em
from ra3lab.ra3.arms import Arm
from ra3lab.tracking import event_dir, scalars
from tests.test_midtraining import CODEWORLD

RLVR = ["tasks.train=8", "tasks.heldout=4", "rlvr.steps=2", "rlvr.group_size=2", "rlvr.prompts_per_step=2",
        "rlvr.max_new_tokens=24", "rlvr.beta=0.04", "rlvr.eval_every=1", "rlvr.save_every=2", "rlvr.timeout_s=2.0",
        "rlvr_eval.n=2", "rlvr_eval.k=[1]"]
TWO_ROUNDS = [*(o for o in CODEWORLD if not o.startswith("midtrain.rounds")), "midtrain.rounds=2"]
BLOCK, FULL, LAST = 32768, 1, 4     # a .wandb file's block size (bytes) and the types of a record's last chunk


def curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the scalars in the event files of ``folder``."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_run(run_dir: Path) -> tuple[str, dict, dict[str, list[tuple[int, float]]], int]:
    """(name, config, ``{tag: [(step, value), ...]}``, exit code) of the one offline W&B run in ``run_dir/wandb``,
    read from its ``.wandb`` file: a 7-byte header, then blocks of chunks (``crc32 length type`` and a piece of one
    of W&B's Record protobufs)."""
    [log] = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    data, records, pending, at = log.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while at + 7 <= len(data):
        if BLOCK - at % BLOCK < 7:      # a block's tail too short for a chunk header is padding
            at += BLOCK - at % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[at:at + 7])
        pending, at = pending + data[at + 7:at + 7 + length], at + 7 + length
        if kind in (FULL, LAST):
            records.append(Record.FromString(pending))
            pending = b""
    [run] = [record.run for record in records if record.HasField("run")]
    [exit] = [record.exit for record in records if record.HasField("exit")]
    rows = [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            for record in records if record.HasField("history")]
    tags = {key for row in rows for key in row if not key.startswith("_") and key != "global_step"}
    return (run.display_name, {u.key: json.loads(u.value_json) for u in run.config.update if u.key != "_wandb"},
            {tag: [(row["global_step"], row[tag]) for row in rows if tag in row] for tag in tags}, exit.exit_code)


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


def test_offline_wandb_mirrors_every_trainers_curves_and_config_in_its_run_dir(isolated_runs):
    config = [*CODEWORLD, *RLVR, "arm=ntp", "tracking.wandb=offline"]
    rlvr_dir = Path(execute("rlvr", compose_experiment("rlvr", config))["run_dir"])
    midtrain_dir = upstream(isolated_runs, rlvr_dir, "model")
    pretrain_dir = upstream(isolated_runs, midtrain_dir, "base")
    for run_dir, trainer in ((pretrain_dir, "pretrain"), (midtrain_dir, "ntp"), (rlvr_dir, "rlvr")):
        name, attached, mirrored, code = wandb_run(run_dir)
        assert (name, code) == (trainer, 0)
        assert attached == OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
        events = curves(run_dir / "tensorboard" / trainer)
        assert events and mirrored.keys() == events.keys(), trainer
        for tag, points in events.items():     # a W&B row per step: a tag written twice at a step keeps the last
            assert dict(mirrored[tag]) == {step: pytest.approx(value, rel=1e-6) for step, value in points}, tag
    assert {"pretrain/loss", "mstep/loss", "train/reward", "eval/pass@1/heldout"} <= {
        tag for run_dir in (pretrain_dir, midtrain_dir, rlvr_dir) for tag in wandb_run(run_dir)[2]}


def test_a_trainer_that_fails_finishes_its_wandb_run_and_the_next_one_starts(tmp_path):
    config = compose_experiment("pretrain", ["tracking.wandb=offline"])
    with pytest.raises(RuntimeError, match="diverged"), scalars(event_dir(config, tmp_path / "a", "pretrain")) as track:
        track(1, {"pretrain/loss": 2.5})
        raise RuntimeError("diverged")
    with scalars(event_dir(config, tmp_path / "b", "pretrain")) as track:
        track(3, {"pretrain/loss": 1.5})
    assert wandb_run(tmp_path / "a")[2:] == ({"pretrain/loss": [(1, 2.5)]}, 1)
    assert wandb_run(tmp_path / "b")[2:] == ({"pretrain/loss": [(3, 1.5)]}, 0)


@pytest.mark.parametrize("overrides", [["tracking.wandb=online"], ["tracking.wandb=yes"],
                                       ["tracking.wandb=offline", "tracking.tensorboard=false"]])
def test_wandb_is_false_or_offline_with_tensorboard(tmp_path, overrides, isolated_runs, capsys):
    with pytest.raises(ConfigError, match="tracking.wandb") as error:
        event_dir(compose_experiment("pretrain", overrides), tmp_path, "pretrain")
    assert error.value.field == "tracking.wandb"
    assert main(["run", "rlvr", *overrides, "--json"]) == 2                  # refused before any stage runs
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["field"] == "tracking.wandb"
    assert not isolated_runs.exists()
