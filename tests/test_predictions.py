"""The theory's predictions for CodeWorld-Plan come from corpus counts and knobs only, and come out either way."""

from __future__ import annotations

import builtins

import pytest

from ra3lab.codeworld import CodeWorldPlan
from ra3lab.studies import predictions


@pytest.fixture(scope="module")
def world() -> CodeWorldPlan:
    return CodeWorldPlan(seed=2)


def test_a_family_corpus_prunes_to_z_eps_and_predicts_a_higher_start(world):
    found = predictions.pruning(world, world.corpus(64, seed=1))
    assert set(found["Z_hat"]) == set(world.family) and found["Z_hat_size"] == world.family_skills
    H = world.skills_per_program
    assert found["P0_pruned"] == pytest.approx(world.family_skills ** -H)
    assert found["P0_unpruned"] == pytest.approx(world.n_skills ** -H) and found["P0_unpruned"] < found["P0_pruned"]


def test_a_corpus_of_every_skill_predicts_no_gain_and_overpruning_predicts_none(world):
    everything = predictions.pruning(world, world.pretraining(200, seed=1))
    assert everything["Z_hat_size"] == world.n_skills and everything["P0_pruned"] == everything["P0_unpruned"]
    strict = predictions.pruning(world, world.corpus(64, seed=1), rule="top_k", k=1)   # drops needed skills
    assert strict["Z_hat_size"] == 1 and strict["P0_pruned"] == 0.0
    assert predictions.pruning(world, [])["P0_pruned"] == 0.0                            # nothing seen, nothing kept


def test_predictions_read_no_file_so_no_measurement(world, monkeypatch):
    corpus = world.corpus(16, seed=3)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a prediction opened {args[:1]}")

    monkeypatch.setattr(builtins, "open", refuse)
    assert predictions.pruning(world, corpus)["corpus_programs"] == 16


def test_steps_to_first_success_fall_with_p0_and_the_rollouts_of_a_step():
    assert predictions.steps_to_first_success(1 / 16, 8, 4) == pytest.approx(0.5)
    assert predictions.steps_to_first_success(1 / 196, 8, 4) == pytest.approx(196 / 32)
    assert predictions.steps_to_first_success(0.0, 8, 4) == float("inf")
    lock = predictions.lock_in(12.0, 1 / 16, 8, 4)
    assert lock == pytest.approx(11.5)
    assert predictions.steps_to_first_success(1 / 196, 8, 4) + lock > 12.0   # a lower start predicts more steps


@pytest.mark.parametrize(("predicted", "low", "high", "rival", "expected"), [
    (0.06, 0.04, 0.09, 0.005, "holds"),            # inside, the rival outside
    (0.06, 0.10, 0.30, 0.005, "contradicted"),     # the measurement lies above
    (0.06, 0.00, 0.02, 0.005, "contradicted"),     # ... and below
    (0.06, 0.00, 0.08, 0.005, "undecided"),        # both inside: not told apart at this power
    (8.0, 4.0, float("inf"), None, "undecided"),   # censored above the prediction
    (2.0, 4.0, float("inf"), None, "contradicted"),  # censored, but surely slower than predicted
    (float("inf"), 4.0, 12.0, None, "contradicted"),  # predicted never, reached
    (8.0, float("nan"), 12.0, None, "undecided"),
])
def test_a_verdict_comes_out_each_way(predicted, low, high, rival, expected):
    assert predictions.verdict(predicted, low, high, rival) == expected
