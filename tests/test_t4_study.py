"""T4 end to end at a tiny scale, and each of its verdicts on constructed cases that flip it."""

import numpy as np
import pytest
import torch

from ra3lab.config import compose_experiment
from ra3lab.errors import ConfigError
from ra3lab.execute import execute
from ra3lab.studies.abstraction import best_cell, compare, errors_at_budgets, validate

T4_TINY = ["vocab_sizes=[32]", "trials=4", "sample_sizes=[1,32]", "rl_budgets=[200,2000]", "episode_steps=96",
           "surface.budgets=[1,12]", "surface.penalties=[0.0,2.0]", "surface.rl_budget=200", "env.n_tasks=4",
           "env.program_length=2"]


def run(overrides):
    return execute("t4_abstraction", compose_experiment("t4_abstraction", overrides))


def test_abstraction_study_draws_curves_and_surface():
    summary = run(T4_TINY)
    for granularity in ("primitive", "abstract"):
        rows = [row for row in summary["curves"] if row["granularity"] == granularity]
        assert all(row["regret"] == pytest.approx(row["gap"] + row["pruning_error"] + row["rl_error"]) for row in rows)
        assert all(0.9 <= row["budget_spent"] <= 1.0 for row in rows if row["budget"] == 2000)   # equal budgets
    surface = summary["surface"]
    regret = np.array(surface["regret"])
    assert regret.shape == (2, 2) and summary["surface_best"]["regret"] == pytest.approx(regret.min())
    assert summary["surface_best"]["budget"] == 12 and regret[0].min() > regret[1].max()   # k = 1 loses needed skills
    assert surface["tied_with_best"][0] == [False, False] and summary["surface_best"]["n_tied"] >= 1


def test_datasets_that_reveal_nothing_fall_back_to_the_full_set_and_are_counted():
    summary = run([*T4_TINY, "sigma=0.01", "sample_sizes=[1]", "rl_budgets=[30]", "surface.budgets=[2]",
                   "surface.penalties=[0.0]", "surface.n_samples=1", "surface.rl_budget=30"])
    assert summary["empty_fallbacks"]["abstract"] > 0 and summary["empty_fallbacks"]["surface"] > 0
    row = next(row for row in summary["curves"] if row["granularity"] == "abstract")
    assert row["kept"] >= row["fallbacks"] / 4 * 12               # a fallback keeps all 12 options
    assert summary["empty_fallbacks"]["abstract"] == row["fallbacks"]


@pytest.mark.parametrize("overrides, verdict", [
    (["sample_sizes=[32]", "rl_budgets=[200]"], "abstraction"),       # 200 steps: too few to learn tokens
    (["sample_sizes=[32]", "rl_budgets=[4000]", "env.n_skill_options=0"], "primitive"),   # only distractor options
])
def test_abstraction_verdict_flips_when_the_options_are_useless(overrides, verdict):
    summary = run([*T4_TINY, "surface.budgets=[12]", "surface.penalties=[0.0]", *overrides])
    assert summary["abstraction_vs_primitive"]["verdict"] == verdict
    if verdict == "primitive":        # the abstraction's own gap is all of V*: nothing inside Z can reach the goal
        rows = [row for row in summary["curves"] if row["granularity"] == "abstract"]
        assert all(row["gap"] == pytest.approx(row["regret"]) and row["gap"] > 0.5 for row in rows)


def test_compare_reads_the_interval_of_the_differences():
    primitive = np.array([0.50, 0.55, 0.45, 0.52])
    assert compare(primitive, primitive - 0.3, 0.95)["verdict"] == "abstraction"
    assert compare(primitive - 0.3, primitive, 0.95)["verdict"] == "primitive"
    noisy = compare(primitive, primitive + np.array([0.2, -0.2, 0.1, -0.1]), 0.95)
    assert noisy["verdict"] == "not separated" and noisy["low"] < 0 < noisy["high"]


def test_best_cell_is_separated_only_when_every_other_cell_is_worse_on_the_same_data():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, size=(6, 1, 1))                      # per-trial difficulty, shared by the cells
    clear = base + np.array([[0.0, 0.1], [0.2, 0.3]]) + rng.normal(0, 0.005, size=(6, 2, 2))
    result = best_cell(clear, 0.95)
    assert result["index"] == (0, 0) and result["separated"] is True and result["tied"].sum() == 1
    twins = np.concatenate([clear[:, :, :1], clear[:, :, :1]], axis=2)  # two identical cells share the best
    result = best_cell(twins, 0.95)
    assert result["separated"] is False and result["tied"].tolist() == [[True, True], [False, False]]
    assert best_cell(clear[:, :1, :1], 0.95)["separated"] is None


def test_errors_are_read_at_the_last_evaluation_within_each_budget():
    steps = torch.tensor([[0, 0], [3, 4], [6, 8], [9, 12]])
    errors = torch.tensor([[1.0, 1.0], [0.5, 0.6], [0.2, 0.3], [0.1, 0.0]])
    read, spent = errors_at_budgets(steps, errors, [5, 9, 20])
    torch.testing.assert_close(read, torch.tensor([[0.5, 0.6], [0.1, 0.3], [0.1, 0.0]]))
    torch.testing.assert_close(spent, torch.tensor([[0.6, 0.8], [1.0, 8 / 9], [0.45, 0.6]], dtype=torch.float64))


@pytest.mark.parametrize("overrides, field", [
    (["env=chain"], "vocab_sizes"),
    (["trials=1"], "trials"),
    (["rl_budgets=[500,200]"], "rl_budgets"),
    (["sample_sizes=[-1,4]"], "sample_sizes"),
    (["episode_steps=0"], "episode_steps"),
    (["surface.n_samples=0"], "surface.n_samples"),
    (["surface.budgets=[0,2]"], "surface.budgets"),
    (["confidence=1.0"], "confidence"),
    (["vocab_sizes=[16]"], "n_actions"),                                # 8 skills x 3 tokens need 24
])
def test_bad_config_is_refused_before_any_work(overrides, field):
    with pytest.raises(ConfigError) as error:
        validate(compose_experiment("t4_abstraction", overrides))
    assert error.value.field == field
