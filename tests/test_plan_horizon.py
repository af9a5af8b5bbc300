"""The horizon prediction across CodeWorld-Plan studies: pairs of cells at equal total lines, verdicts that come out
either way on constructed measurements, panels and the table; the horizon sweep's worlds exist at every (H, tau)."""

from __future__ import annotations

import math

import pytest

from ra3lab.codeworld import CodeWorldPlan
from ra3lab.plots.tables import to_markdown
from ra3lab.studies import plan_horizon
from ra3lab.studies.predictions import steps_to_first_success

ROLLOUTS = 32   # G x B


def cell(H: int, tau: int, steps: dict[str, tuple[float | None, float | None, float | None]],
         z_hat: int = 4) -> dict:
    """A codeworld_plan summary built by hand: S* (point, low, high; None: never reached) per arm, P0 = z_hat^-H."""
    return {"world": {"H": H, "tau": float(tau)}, "rollouts_per_step": ROLLOUTS, "rlvr_steps": 40,
            "P0": {arm: {"predicted": z_hat ** -H} for arm in steps},
            "steps_to_threshold": {"absolute": {arm: dict(zip(("point", "low", "high"), row))
                                                for arm, row in steps.items()}}}


def test_only_cells_of_equal_total_lines_and_different_tau_pair_up_smaller_tau_first():
    cells = [cell(H, tau, {"ntp": (10, 8, 12)}) for H, tau in ((2, 2), (2, 4), (4, 2), (3, 3), (4, 4))]
    pairs = plan_horizon.pairs(cells)
    assert [(plan_horizon.shape(a), plan_horizon.shape(b)) for a, b in pairs] == [((4, 2.0), (2, 4.0))]


@pytest.mark.parametrize(("arm", "small_tau", "large_tau", "measured", "verdict"), [
    ("dsl", (20, 16, 24), (6, 4, 8), "falls", "holds"),
    ("dsl", (6, 4, 8), (20, 16, 24), "rises", "contradicted"),
    ("ra3_c0.05", (10, 6, 14), (8, 5, 12), "overlaps", "undecided"),
    ("teacher_s0.5", (None, 30, None), (12, 8, 16), "falls", "holds"),    # never reached, then reached
    ("ntp", (20, 16, 24), (6, 4, 8), "falls", "contradicted"),
    ("ntp", (6, 4, 8), (20, 16, 24), "rises", "holds"),
    ("ntp", (8, 4, 12), (None, 30, None), "rises", "holds"),
])
def test_per_skill_arms_must_fall_with_tau_and_per_line_arms_must_not(arm, small_tau, large_tau, measured, verdict):
    rows = plan_horizon.judge([cell(4, 2, {arm: small_tau}), cell(2, 4, {arm: large_tau})])
    assert len(rows) == 1
    row = rows[0]
    assert (row["measured"], row["verdict"]) == (measured, verdict)
    assert row["decides"] == ("per line" if arm == "ntp" else "per skill")
    assert row["H"] == [4, 2] and row["tau"] == [2.0, 4.0] and row["total_lines"] == 8


def test_an_arm_missing_from_a_cell_is_not_judged_there():
    rows = plan_horizon.judge([cell(4, 2, {"ntp": (6, 4, 8), "dsl": (9, 8, 10)}), cell(2, 4, {"ntp": (6, 4, 8)})])
    assert [row["arm"] for row in rows] == ["ntp"]


def test_panels_set_s_star_against_tau_next_to_the_per_skill_form_with_the_lock_in_fitted_on_ntp():
    cells = [cell(4, 2, {"ntp": (30, 20, 40), "dsl": (None, 30, None)}),
             cell(2, 4, {"ntp": (12, 8, 16), "dsl": (4, 2, 6)}),
             cell(3, 3, {"ntp": (20, 10, 30), "dsl": (8, 6, 10)})]     # alone at 9 lines: no panel
    items = plan_horizon.panels(cells)
    assert [item["name"] for item in items] == ["S*, ntp, H x tau = 8", "S*, dsl, H x tau = 8"]
    offsets = [steps - steps_to_first_success(4.0 ** -H, ROLLOUTS, 1) for steps, H in ((30, 4), (12, 2), (20, 3))]
    lock = sorted(offsets)[1]
    dsl = items[1]
    assert dsl["x"] == [2.0, 4.0]
    assert dsl["measured"] == [40, 4] and dsl["high"] == [40, 6]            # never reached: drawn at the budget
    predicted = dsl["predicted"]["per skill: 1/(P0 G B) + L"]
    assert predicted == pytest.approx([min(40, 4 ** 4 / ROLLOUTS + lock), 4 ** 2 / ROLLOUTS + lock])


def test_without_an_ntp_success_the_form_is_not_drawn():
    cells = [cell(4, 2, {"ntp": (None, 30, None)}), cell(2, 4, {"ntp": (None, 30, None)})]
    (item,) = plan_horizon.panels(cells)
    assert all(math.isnan(value) for value in item["predicted"]["per skill: 1/(P0 G B) + L"])


def test_the_verdict_table_shows_both_cells_with_their_intervals():
    rows = plan_horizon.judge([cell(4, 2, {"dsl": (20, 16, 24)}), cell(2, 4, {"dsl": (6, 4, 8)})])
    text = to_markdown(plan_horizon.table(rows))
    assert "dsl: (H, tau) 4x2 -> 2x4" in text and "20 [16, 24]" in text and "6 [4, 8]" in text
    assert "| holds |" in text


@pytest.mark.parametrize("tau", [2, 3, 4])
@pytest.mark.parametrize("H", [2, 3, 4])
def test_the_horizon_sweep_has_a_world_at_every_cell_with_skills_of_exactly_tau_lines(H, tau):
    world = CodeWorldPlan(n_skills=6, family_skills=4, skills_per_program=H, lines_per_skill=tau, n_families=8)
    assert world.quantities == {"Z": 6, "Z_eps": 4, "H": H, "tau": float(tau)}
    assert len(world.families("heldout")) == 2
