"""The mid-training studies end to end at a tiny scale through the command line: CodeWorld (base, NTP,
references, RA3) and the real-corpus path (the standard library as corpus, HumanEval as tasks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ra3lab.cli import main
from ra3lab.errors import ConfigError
from ra3lab.plots import style
from ra3lab.ra3.arms import Arm, ra3_by_penalty

TINY = ["model.hidden=32", "model.layers=2", "model.heads=2", "pretrain.steps=30", "pretrain.batch_size=8",
        "midtrain.rounds=1", "midtrain.steps_per_round=4", "midtrain.batch_size=4", "estep.steps=2",
        "estep.snippets_per_step=2", "estep.group_size=2", "estep.max_thought_tokens=4", "eval.elbo_samples=1",
        "eval.n=2", "eval.k=[1,2]", "cs=[0.05]"]
CODEWORLD = ["data.pretrain=40", "data.midtrain=8", "data.heldout=4", "tokenizer.vocab_size=300",
             "references=[ntp,infuse0,random]", *TINY]
CORPUS = ["corpus.max_files=24", "corpus.train_snippets=8", "corpus.heldout_snippets=3", "corpus.snippet_lines=12",
          "tokenizer.vocab_size=300", "eval.limit=2", "eval.max_new_tokens=32", *TINY]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_codeworld_study_reports_every_arm_and_saves_checkpoints(capsys, isolated_runs):
    assert main(["run", "codeworld_ra3", *CODEWORLD, "--json"]) == 0
    summary = last_json(capsys)
    arms = summary["arms"]
    assert list(arms) == ["base", "ntp", "infuse0", "ra3_c0.05", "random"]     # random last: matched to RA3
    for row in arms.values():
        assert 0 < row["nll_plain"] and 0 < row["nll_elbo"] and 0 <= row["pass@1"] <= row["pass@2"] <= 1
        assert {"thought_rate", "thought_length", "truncation_rate", "pass_with_thought", "pass_without_thought",
                "decision_greedy_pass@1", "decision_greedy_thought_rate", "elbo_thought_boundary_f1"} <= set(row)
        assert row["budget_mean"] > 32          # derived from the tasks: room for a thought before every line
        assert {"prior_names_intent", "posterior_names_intent", "prior_names_next_lines",
                "posterior_names_next_lines"} <= set(row)
    assert {"infused_rate", "infused_boundary_f1", "estep_reward_first", "estep_reward_last"} <= set(arms["ra3_c0.05"])
    assert arms["infuse0"]["estep_reward_first"] is None and "infused_boundary_precision" in arms["infuse0"]
    assert {"rate", "boundary_precision", "boundary_recall"} <= set(summary["base_placement"])
    assert set(summary["predictions"]) == {"ra3_elbo_nll_below_ntp_nll", "ra3_sampled_pass_at_1_above_ntp",
                                           "ra3_boundary_f1_above_random_placement", "ra3_boundary_f1_above_infuse0",
                                           "thought_rate_falls_with_c"}
    run_dir = Path(summary["figures"][0]).parents[1]
    upstream = OmegaConf.load(run_dir / "config.yaml").upstream       # the stage runs it composes
    assert upstream["train_base"].startswith("midtrain/") and upstream["eval_ntp"].startswith("evaluate/")
    for name in ("ntp", "random", "infuse0", "ra3_c0.05"):
        assert (Arm.parse(name).model_dir(isolated_runs / upstream[f"train_{name}"], 1) / "config.json").exists()
    base = OmegaConf.load(isolated_runs / upstream["train_ntp"] / "config.yaml").upstream.base
    assert (isolated_runs / base / "model" / "config.json").exists()
    # the numbers pinned when each rollout got its own random numbers (the single-process study these stages
    # replaced gave the stages' numbers to 1e-12 before): the same config reproduces them on CPU
    pinned = {"base": 4.348957868303572, "ntp": 4.2850411551339285, "infuse0": 4.2852852957589285,
              "ra3_c0.05": 4.2852001953125, "random": 4.285940638950893}
    assert {name: row["nll_plain"] for name, row in arms.items()} == pytest.approx(pinned, rel=1e-12, abs=0)
    assert all(Path(path).exists() for path in summary["figures"])
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    estep = [line for line in lines if "estep/reward" in line]
    assert len(estep) == 2 and {"rationale/rate", "rationale/boundary_f1", "arm", "round"} <= set(estep[0])
    assert [line["eval/arm"] for line in lines if "eval/arm" in line] == list(arms)


@pytest.mark.slow
def test_real_corpus_study_runs_on_the_standard_library_and_humaneval_as_stages(capsys, isolated_runs):
    assert main(["run", "ra3_corpus", *CORPUS, "--json"]) == 0
    summary = last_json(capsys)
    assert summary["tasks"] == 2 and summary["corpus"] == {"train_snippets": 8, "heldout_snippets": 3}
    for row in summary["arms"].values():
        assert 0 <= row["pass@1/humaneval"] <= row["pass@2/humaneval"] <= 1 and row["nll_plain"] > 0
    # the numbers of the single-process study these stages replace (commit df165fc), at the same seeds; the
    # E-step's reward since each rollout draws its own random numbers
    monolith = {"base": 4.620448521205357, "ntp": 4.581512786529877, "ra3_c0.05": 4.581512786529877}
    assert {arm: row["nll_plain"] for arm, row in summary["arms"].items()} == pytest.approx(monolith, rel=1e-12, abs=0)
    assert summary["arms"]["ra3_c0.05"]["estep_reward_first"] == pytest.approx(-78.0648701985677, rel=1e-12)
    counts = {stage: len(list((isolated_runs / stage).iterdir())) for stage in ("pretrain", "midtrain", "evaluate")}
    assert counts == {"pretrain": 1, "midtrain": 3, "evaluate": 3}
    # another penalty reuses the base model and the base and NTP arms: one new midtrain and evaluate run each
    assert main(["run", "ra3_corpus", *CORPUS, "cs=[0.2]", "--json"]) == 0
    counts = {stage: len(list((isolated_runs / stage).iterdir())) for stage in ("pretrain", "midtrain", "evaluate")}
    assert counts == {"pretrain": 1, "midtrain": 4, "evaluate": 4}


@pytest.mark.parametrize(("override", "field"), [
    ("cs=[-0.1]", "cs"), ("estep.group_size=1", "estep.group_size"), ("estep.max_thought_tokens=0",
                                                                       "estep.max_thought_tokens"),
    ("estep.baseline=mean", "estep.baseline"), ("references=[teacher]", "references"),
    ("estep.returns=discounted", "estep.returns"), ("estep.kl_coef=-1", "estep.kl_coef"),
    ("eval.n=2", "eval.n"), ("eval.temperature=0", "eval.temperature"), ("eval.decoding=beam", "eval.decoding"),
    ("cs=[]", "references"), ("estep.steps=2.5", "estep.steps"), ("estep.lr=0", "estep.lr"),
    ("estep.snippets_per_step=0", "estep.snippets_per_step")])
def test_bad_method_settings_are_refused_before_any_work(override, field, capsys, isolated_runs):
    assert main(["run", "codeworld_ra3", override, "--json"]) == 2
    assert last_json(capsys)["field"] == field
    assert not isolated_runs.exists()


@pytest.mark.parametrize(("override", "field"), [
    ("corpus.path=/nonexistent/corpus", "corpus.path"), ("eval.k=[1,9]", "eval.n"),
    ("eval.tasks=/nonexistent/tasks.jsonl", "eval.tasks")])
def test_bad_corpus_settings_are_refused_before_any_work(override, field, capsys, isolated_runs):
    assert main(["run", "ra3_corpus", override, "--json"]) == 2
    assert last_json(capsys)["field"] == field


def test_an_arm_round_trips_its_name_and_knows_where_its_models_lie(tmp_path):
    for name in ("base", "ntp", "oracle", "random", "infuse0", "ra3_c0.05", "ra3_c1e-05", "ra3_c2"):
        assert Arm.parse(name).name == name
    ra3 = Arm.ra3(0.05)
    assert Arm.parse("ra3_c0.05") == ra3 and (ra3.name, ra3.kind, ra3.c) == ("ra3_c0.05", "ra3", 0.05)
    assert [Arm.parse(name).kind for name in ("base", "ntp", "infuse0")] == ["base", "reference", "infuse0"]
    assert ra3.model_dir(tmp_path, 2) == tmp_path / "checkpoints" / "ra3_c0.05" / "round_1"
    assert Arm.parse("infuse0").model_dir(tmp_path, 1) == tmp_path / "checkpoints" / "infuse0" / "round_0"
    assert Arm.parse("ntp").model_dir(tmp_path, 3) == tmp_path / "checkpoints" / "ntp"
    with pytest.raises(ConfigError) as error:
        Arm.parse("ra3_cbig", "inits")
    assert error.value.field == "inits"
    assert ra3_by_penalty({"ra3_c0.2": "b", "ntp": "x", "ra3_c0.01": "a"}) == [(0.01, "a"), (0.2, "b")]
    assert style.label("ra3_c0.05") == "RA3 (c=0.05)" and style.color("ra3_c0.2") == style.color("ra3")


def arm(nll_plain=0.02, nll_elbo=0.02, pass1=0.5, rate=0.1, f1=0.5, truncated=0.0) -> dict:
    return {"nll_plain": nll_plain, "nll_elbo": nll_elbo, "pass@1": pass1, "infused_rate": rate,
            "infused_boundary_f1": f1, "truncation_rate": truncated}


def test_each_prediction_of_the_codeworld_study_can_come_out_either_way():
    from ra3lab.studies.codeworld_ra3 import predictions

    random_placement = {"boundary_f1": 0.3}
    winning = {"ntp": arm(nll_plain=0.03, pass1=0.4), "infuse0": arm(f1=0.2),
               "ra3_c0.01": arm(nll_elbo=0.02, pass1=0.6, rate=0.2, f1=0.7), "ra3_c0.1": arm(rate=0.1, f1=0.6)}
    losing = {"ntp": arm(nll_plain=0.01, pass1=0.7), "infuse0": arm(f1=0.9),
              "ra3_c0.01": arm(nll_elbo=0.02, pass1=0.6, rate=0.1, f1=0.2), "ra3_c0.1": arm(rate=0.2, f1=0.1)}
    yes = predictions(winning, [0.01, 0.1], random_placement)
    no = predictions(losing, [0.01, 0.1], random_placement)
    for key in ("ra3_elbo_nll_below_ntp_nll", "ra3_sampled_pass_at_1_above_ntp",
                "ra3_boundary_f1_above_random_placement", "ra3_boundary_f1_above_infuse0"):
        assert yes[key]["c=0.01"] is True and no[key]["c=0.01"] is False, key
    assert yes["thought_rate_falls_with_c"] is True and no["thought_rate_falls_with_c"] is False
    missing = predictions({"ra3_c0.01": arm()}, [0.01], None)
    assert missing["ra3_elbo_nll_below_ntp_nll"] is None and missing["ra3_boundary_f1_above_random_placement"] is None


def test_a_truncation_rate_above_five_percent_is_a_warning():
    from ra3lab.studies.codeworld_ra3 import warnings

    config = OmegaConf.create({"eval": {"max_new_tokens": 64}})
    (line,) = warnings({"ntp": arm(truncated=0.05), "oracle": arm(truncated=0.2)}, config)
    assert line.startswith("oracle: truncation_rate 0.200")
    assert warnings({"ntp": arm(truncated=0.0)}, config) == []
