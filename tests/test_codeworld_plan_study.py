"""The CodeWorld-Plan study end to end at a tiny scale (gates, predictions, measurements, verdicts), its verdicts on
constructed measurements, and bad input refused before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ra3lab.codeworld import CodeWorldPlan
from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.ra3.arms import Arm
from ra3lab.studies import codeworld_plan, predictions
from tests.test_midtraining import TINY

PLAN = ["data.pretrain=40", "data.midtrain=8", "data.heldout=4", "tokenizer.vocab_size=300", *TINY,
        "references=[ntp,dsl]", "seeds=[0,1]", "tasks.train=4", "tasks.heldout=4", "rlvr.steps=6",
        "rlvr.group_size=2", "rlvr.prompts_per_step=2", "rlvr.eval_every=3", "rlvr.save_every=3", "rlvr_eval.n=2",
        "reps=100"]
VERDICTS = {"holds", "contradicted", "undecided"}


def test_the_study_reports_gates_predictions_and_measurements_and_an_untrained_base_stops_it(isolated_runs):
    config = compose_experiment("codeworld_plan", PLAN)
    summary = execute("codeworld_plan", config)
    world = CodeWorldPlan(**{k: v for k, v in OmegaConf.to_container(config.env).items() if k != "_target_"})
    H = world.skills_per_program
    assert summary["predictions"]["P0_unpruned"] == pytest.approx(world.n_skills ** -H)
    assert summary["predictions"]["Z_hat_size"] <= world.family_skills
    assert set(summary["gates"]) == {"execution", "learning", "thinking"}
    # 30 pre-training steps of a 32-wide model do not write the skills: the execution gate stops the study
    assert summary["gates"]["execution"]["measured"] < 0.9 and not summary["gates_passed"]
    assert "pretrain" in summary["stopped"] and summary["verdicts"] is None
    assert set(summary["P0"]) == {"base", "ntp", "dsl", "ra3_c0.05"} and set(summary["S*"]) == {"base", "dsl",
                                                                                                 "ra3_c0.05"}
    for row in summary["P0"].values():
        assert row["low"] <= row["measured"] <= row["high"] and row["verdict"] in VERDICTS
    for row in summary["S*"].values():
        assert row["verdict"] in VERDICTS
    assert all(Path(path).exists() for path in summary["figures"])


def constructed(ntp_steps: float, dsl_steps: tuple[float, float, float], dsl_p0: tuple[float, float, float]):
    """judge() on measurements built by hand: NTP reaches the threshold at ``ntp_steps``; the DSL arm's S* and
    P0 are (point, low, high)."""
    config = OmegaConf.create({"rlvr": {"group_size": 8, "prompts_per_step": 4}})
    pruning = {"P0_pruned": 1 / 16, "P0_unpruned": 1 / 196}
    arms = [Arm.parse("ntp"), Arm.parse("dsl")]
    measured = {"ntp": {"point": 0.06, "low": 0.04, "high": 0.09},
                "dsl": dict(zip(("point", "low", "high"), dsl_p0))}
    reached = {"ntp": {"point": ntp_steps, "low": ntp_steps - 2, "high": ntp_steps + 2},
               "dsl": dict(zip(("point", "low", "high"), dsl_steps))}
    return codeworld_plan.judge(config, arms, pruning, measured, reached)


def test_the_lock_in_constant_is_fitted_on_ntp_and_the_predictions_come_out_either_way():
    held = constructed(12.0, (12.0, 10.0, 14.0), (0.07, 0.05, 0.09))
    assert held["lock_in"] == pytest.approx(12.0 - 0.5)          # S*_NTP - 1 / (P0 G B)
    assert held["S*"]["dsl"]["predicted"] == pytest.approx(12.0)  # the same P0, the same steps
    assert held["S*"]["dsl"]["verdict"] == "holds" and held["P0"]["dsl"]["verdict"] == "holds"
    assert "ntp" not in held["S*"]                               # fitted there, so not tested there
    slower = constructed(12.0, (30.0, 24.0, 36.0), (0.005, 0.0, 0.01))
    assert slower["S*"]["dsl"]["verdict"] == "contradicted" and slower["P0"]["dsl"]["verdict"] == "contradicted"
    unfitted = constructed(math.inf, (8.0, 6.0, 10.0), (0.07, 0.05, 0.09))   # NTP never reached the threshold
    assert math.isnan(unfitted["lock_in"]) and unfitted["S*"]["dsl"]["verdict"] == "undecided"
    censored = constructed(12.0, (math.inf, 20.0, math.inf), (0.07, 0.0, 0.2))
    assert censored["S*"]["dsl"]["verdict"] == "contradicted"      # surely slower than 12 steps
    assert censored["P0"]["dsl"]["verdict"] == "undecided"         # 1/16 and 1/196 both inside


def test_predictions_need_no_rl_run(isolated_runs):
    world = CodeWorldPlan(seed=0, skills_per_program=2)
    found = predictions.pruning(world, world.corpus(32, seed=1))
    assert not isolated_runs.exists()                             # nothing was run, nothing was read
    assert found["P0_pruned"] == pytest.approx(found["Z_hat_size"] ** -2)


@pytest.mark.parametrize(("override", "field"), [
    ("env=codeworld", "env"),
    ("env.spec=prose", "env.spec"),
    ("env.family_skills=20", "env.family_skills"),
    ("env.max_lines=6", "env.max_lines"),
    ("env.n_families=300", "env.n_families"),
    ("threshold.absolute=0", "threshold.absolute"),
    ("prune.rule=largest", "prune.rule"),
    ("references=[dsl]", "references"),
    ("references=[ntp,teacher_s2]", "references"),
    ("seeds=[]", "seeds"),
])
def test_bad_input_is_refused_before_any_work(override, field, isolated_runs):
    with pytest.raises(ConfigError) as error:
        execute("codeworld_plan", compose_experiment("codeworld_plan", [*PLAN, override]))
    assert error.value.field == field
    assert not isolated_runs.exists()


def test_the_mediators_read_plans_off_samples_and_tell_lock_in_from_search():
    from ra3lab.studies.mediators import plan_profile

    world = CodeWorldPlan(seed=0, skills_per_program=2)
    train = [world.plans[f] for f in world.families("train")]
    held = world.sample(4, "heldout", seed=1)
    target = held[0].skills

    def text(body):
        return "\n".join(body) + "\n"

    locked = plan_profile(world, [text(world.sample(1, seed=s)[0].body) for s in range(4)], [target] * 4)
    assert locked["coherence"] == 1.0 and locked["train_plan_share"] == 1.0 and locked["target_plan_share"] == 0.0
    assert locked["z_eps_mass"] == 1.0 and locked["plans"][0]["plan"] in [list(plan) for plan in train]
    found = plan_profile(world, [text(held[0].body), "    return 0\n", text(["    xs = xs[::-1]", "    return xs"])],
                         [target] * 3)
    assert found["coherence"] == pytest.approx(1 / 3) and found["target_plan_share"] == 1.0
    assert found["train_plan_share"] == 0.0
    assert plan_profile(world, ["    return 0\n"], [target])["z_eps_mass"] is None
