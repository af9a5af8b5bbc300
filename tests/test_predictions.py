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
