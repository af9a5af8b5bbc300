"""T3 (Theorem 3.6) end to end at a tiny scale, and each verdict it prints on a constructed case that must
come out the other way: a too-small bound, gamma-free sweeps, a reversed ordering, censored learners."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ra3lab.config import compose_experiment
from ra3lab.envs.annuity import annuity
from ra3lab.envs.chain import chain
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.mdp.learning import q_learning
from ra3lab.stats import spearman
from ra3lab.studies.horizon import RANK_THRESHOLD, analyse, learn, sweep_cell, validate

T3_TINY = ["env.n_states=10", "second_env.n_states=10", "second_env.near=3", "taus=[1,2,4]", "gammas=[0.9,0.99]",
           "learner.seeds=2", "learner.budget=1000"]
TAUS, GAMMAS = (1, 2, 4), (0.9, 0.95, 0.99)


def test_horizon_study_respects_the_bound_and_its_ordering():
    summary = execute("t3_horizon", compose_experiment("t3_horizon", T3_TINY))
    assert summary["thm_3_6_bound_violations"] == 0
    chain_measures, annuity_measures = (summary["families"][name]["measures"] for name in ("chain", "annuity"))
    for measures in (chain_measures, annuity_measures):
        assert measures["policy_sweeps"]["violations"] == measures["value_sweeps"]["violations"] == 0
    assert annuity_measures["policy_sweeps"]["ordered_like_bound"] is True
    assert chain_measures["policy_sweeps"]["spearman"] < annuity_measures["policy_sweeps"]["spearman"]  # blind to gamma
    assert chain_measures["policy_sweeps"]["grows_with_horizon"] is False    # distance / tau whatever gamma is
    assert annuity_measures["policy_sweeps"]["grows_with_horizon"] is True
    rows = summary["settings"]
    for family in ("chain", "annuity"):
        for gamma in (0.9, 0.99):
            sweeps = [row["policy_sweeps"] for row in rows if row["family"] == family and row["gamma"] == gamma]
            assert sweeps == sorted(sweeps, reverse=True) and sweeps[0] > sweeps[-1]  # longer options, fewer sweeps
    for row in rows:
        assert row["gamma_bar"] == pytest.approx(row["gamma_bar_predicted"])      # deterministic tau: gamma^tau
    censored = sum(row["learner_censored"] for row in rows if row["family"] == "annuity")
    assert summary["families"]["annuity"]["measures"]["learner_samples"]["censored"] == sum(
        row["learner_samples"] is None for row in rows if row["family"] == "annuity") and censored > 0
    metrics = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == len(rows) == 12 and "theory/t3/bound" in metrics[0]
    assert len(summary["figures"]) == 4 and all(Path(path).stat().st_size > 0 for path in summary["figures"])


def sweep_rows(build) -> list[dict]:
    """Exact cells of a family on the (tau, gamma) grid, as the study lays them out."""
    return [{"tau": tau, "gamma": gamma} | sweep_cell(build(gamma=gamma, taus=[tau]), 1e-3)
            for gamma in GAMMAS for tau in TAUS]


def chain_rows() -> list[dict]:
    return sweep_rows(lambda **kwargs: chain(n_tasks=1, n_states=12, **kwargs))


def annuity_rows() -> list[dict]:
    return sweep_rows(lambda **kwargs: annuity(n_states=12, near=4, **kwargs))


@pytest.mark.parametrize("measure", ["policy_sweeps", "value_sweeps"])
def test_a_bound_too_small_is_flagged_as_violated(measure):
    rows = annuity_rows()
    assert analyse(rows, measure)["violations"] == 0
    shrunk = [row | {"bound": row["bound"] / 20} for row in rows]
    assert analyse(shrunk, measure)["violations"] == len(rows)


def test_sweeps_grow_with_the_horizon_on_the_annuity_but_not_on_the_chain():
    flat = analyse(chain_rows(), "policy_sweeps")
    assert flat["slope_horizon"]["slope"] == 0.0 and flat["grows_with_horizon"] is False
    rising = analyse(annuity_rows(), "policy_sweeps")
    assert rising["grows_with_horizon"] is True and rising["slope_horizon"]["low"] > 0.2


def test_a_reversed_ordering_is_not_ordered_like_the_bound():
    rows = annuity_rows()
    ordered = analyse(rows, "policy_sweeps")
    assert ordered["ordered_like_bound"] is True and ordered["spearman"] >= RANK_THRESHOLD
    reversed_rows = [row | {"policy_sweeps": 1e4 / row["policy_sweeps"]} for row in rows]
    reversed_fit = analyse(reversed_rows, "policy_sweeps")
    assert reversed_fit["ordered_like_bound"] is False
    assert reversed_fit["spearman"] == pytest.approx(-ordered["spearman"])


def test_censored_cells_are_counted_and_left_out_of_rank_and_slopes():
    rows = [row | {"learner_samples": np.inf if row["tau"] == 1 else 100.0 * row["policy_sweeps"] * row["gamma"]}
            for row in annuity_rows()]
    result = analyse(rows, "learner_samples")
    finite = [row for row in rows if row["tau"] > 1]
    assert result["censored"] == len(GAMMAS) and result["violations"] is None     # samples are not in sweeps
    assert result["spearman"] == pytest.approx(spearman([r["bound"] for r in finite],
                                                        [r["learner_samples"] for r in finite])["rho"])
    assert result["slope_horizon_pooled"]["n"] == len(finite)
    assert result["slope_tau"]["0.9"] is None                # 2 uncensored lengths cannot carry a slope


@pytest.mark.parametrize("budget, censored", [(1, 4), (4000, 0)])
def test_learners_without_budget_are_censored_and_with_it_reach_eps(budget, censored):
    family = chain(n_tasks=1, n_states=8, gamma=0.95, taus=[2])
    learner = OmegaConf.create({"seeds": 4, "budget": budget, "eval_steps": 10, "episode_length": 10, "eps": 0.1})
    result = learn(learner, family, tau=2, seed=0)
    assert result["learner_censored"] == censored and result["learners"] == 4
    if censored:
        assert result["learner_samples"] == result["learner_decisions"] == np.inf
    else:                                                    # each decision runs 2 steps, fewer at the goal
        assert result["learner_decisions"] <= result["learner_samples"] <= 2 * result["learner_decisions"]


def test_q_learning_stops_once_every_learner_reached_eps_and_changes_nothing_before():
    family = chain(n_tasks=1, n_states=8, gamma=0.95, taus=[1])
    arguments = {"allowed": torch.ones(3, 2, dtype=torch.bool), "tasks": torch.zeros(3, dtype=torch.long),
                 "n_decisions": 1200, "eval_every": 10, "eps": 0.05, "terminal": family.meta["terminal"]}
    full = q_learning(family.mdps, family.options, generator=torch.Generator().manual_seed(1), **arguments)
    stopped = q_learning(family.mdps, family.options, generator=torch.Generator().manual_seed(1), stop_at_eps=True,
                         **arguments)
    assert torch.isfinite(full.samples_to_eps).all() and torch.equal(stopped.samples_to_eps, full.samples_to_eps)
    T = len(stopped.decisions)
    assert T < len(full.decisions) and torch.equal(stopped.error, full.error[:T])
    assert (stopped.error <= 0.05).any(0).all() and not (stopped.error[:-1] <= 0.05).any(0).all()


@pytest.mark.parametrize("override, field", [
    ("gammas=[0.9,1.0]", "gammas"),
    ("taus=[1,2,2.5]", "taus"),
    ("second_env=chain", "second_env"),
    ("envs@second_env=chain", "second_env"),
    ("learner.budget=0", "learner.budget"),
    ("learner.eval_steps=0", "learner.eval_steps"),
    ("learner.episode_length=0", "learner.episode_length"),
    ("second_env.near=40", "second_env.near"),
])
def test_bad_config_is_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        validate(compose_experiment("t3_horizon", [override]))
    assert error.value.field == field


def test_one_discount_leaves_only_the_slopes_in_tau():
    from ra3lab.studies.horizon import slopes

    rows = [{"tau": tau, "gamma": 0.9, "effective_horizon": 1 / (1 - 0.9**tau), "policy_sweeps": 40 / tau}
            for tau in (1, 2, 4, 8)]
    fits = slopes(rows, "policy_sweeps")
    assert fits["slope_horizon"] is None                       # gamma's effect needs two discounts at one tau
    assert fits["slope_tau"]["0.9"]["slope"] == pytest.approx(-1.0)
