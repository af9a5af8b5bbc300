"""The horizon prediction across CodeWorld-Plan studies: pairs of cells at equal total lines, verdicts that come out
either way on constructed measurements, panels and the table; the horizon sweep's worlds exist at every (H, tau)."""

from __future__ import annotations

import json
import math

import pytest

from ra3lab.cli import main
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


def test_cells_pair_up_at_equal_total_lines_or_equal_h_smaller_tau_first():
    cells = [cell(H, tau, {"ntp": (10, 8, 12)}) for H, tau in ((2, 2), (2, 4), (4, 2), (3, 3), (4, 4))]
    shapes = {at: [(plan_horizon.shape(a), plan_horizon.shape(b)) for a, b in plan_horizon.pairs(cells, at)]
              for at in ("H x tau", "H")}
    assert shapes == {"H x tau": [((4, 2.0), (2, 4.0))], "H": [((2, 2.0), (2, 4.0)), ((4, 2.0), (4, 4.0))]}


@pytest.mark.parametrize(("arm", "shapes", "small_tau", "large_tau", "measured", "verdict"), [
    ("dsl", ((4, 2), (2, 4)), (20, 16, 24), (6, 4, 8), "falls", "holds"),
    ("dsl", ((4, 2), (2, 4)), (6, 4, 8), (20, 16, 24), "rises", "contradicted"),
    ("ra3_c0.05", ((4, 2), (2, 4)), (10, 6, 14), (8, 5, 12), "unchanged", "undecided"),
    ("teacher_s0.5", ((4, 2), (2, 4)), (None, 30, None), (12, 8, 16), "falls", "holds"),   # never reached, reached
    ("ntp", ((4, 2), (2, 4)), (20, 16, 24), (6, 4, 8), "falls", "contradicted"),
    ("ntp", ((4, 2), (2, 4)), (10, 6, 14), (8, 5, 12), "unchanged", "holds"),
    ("ntp", ((4, 2), (2, 4)), (8, 4, 12), (None, 30, None), "rises", "contradicted"),
    ("dsl", ((2, 2), (2, 4)), (10, 6, 14), (8, 5, 12), "unchanged", "holds"),
    ("dsl", ((2, 2), (2, 4)), (6, 4, 8), (20, 16, 24), "rises", "contradicted"),
    ("ntp", ((2, 2), (2, 4)), (6, 4, 8), (20, 16, 24), "rises", "holds"),
    ("ntp", ((2, 2), (2, 4)), (10, 6, 14), (8, 5, 12), "unchanged", "undecided"),
    ("ntp", ((2, 2), (2, 4)), (20, 16, 24), (6, 4, 8), "falls", "contradicted"),
])
def test_per_skill_arms_fall_with_tau_at_equal_total_lines_and_per_line_arms_rise_at_equal_h(
        arm, shapes, small_tau, large_tau, measured, verdict):
    (H1, tau1), (H2, tau2) = shapes
    (row,) = plan_horizon.judge([cell(H1, tau1, {arm: small_tau}), cell(H2, tau2, {arm: large_tau})])
    assert (row["measured"], row["verdict"]) == (measured, verdict)
    assert row["at"] == ("H" if H1 == H2 else "H x tau")
    assert row["decides"] == ("per line" if arm == "ntp" else "per skill")
    assert row["H"] == [H1, H2] and row["tau"] == [float(tau1), float(tau2)]


def test_a_study_a_gate_stopped_stops_the_verdicts_of_its_pairs():
    stopped = {**cell(4, 2, {"dsl": (None, 30, None)}), "gates_passed": False}
    (row,) = plan_horizon.judge([stopped, cell(2, 4, {"dsl": (6, 4, 8)})])
    assert (row["measured"], row["verdict"], row["gates_passed"]) == ("falls", "stopped", [False, True])


def test_an_arm_missing_from_a_cell_is_not_judged_there():
    rows = plan_horizon.judge([cell(4, 2, {"ntp": (6, 4, 8), "dsl": (9, 8, 10)}), cell(2, 4, {"ntp": (6, 4, 8)})])
    assert [row["arm"] for row in rows] == ["ntp"]


def test_panels_set_s_star_against_tau_next_to_the_per_skill_form_with_the_lock_in_fitted_on_ntp():
    cells = [cell(4, 2, {"ntp": (30, 20, 40), "dsl": (None, 30, None)}),
             cell(2, 4, {"ntp": (12, 8, 16), "dsl": (4, 2, 6)}),
             cell(3, 3, {"ntp": (20, 10, 30), "dsl": (8, 6, 10)})]     # alone at 9 lines and at H = 3: no panel
    items = plan_horizon.panels(cells)
    assert [item["name"] for item in items] == ["S*, ntp, H x tau = 8", "S*, dsl, H x tau = 8"]
    offsets = [steps - steps_to_first_success(4.0 ** -H, ROLLOUTS, 1) for steps, H in ((30, 4), (12, 2), (20, 3))]
    lock = sorted(offsets)[1]
    dsl = items[1]
    assert dsl["x"] == [2.0, 4.0]
    assert dsl["measured"] == [40, 4] and dsl["high"] == [40, 6]            # never reached: drawn at the budget
    predicted = dsl["predicted"]["per skill: 1/(P0 G B) + L"]
    assert predicted == pytest.approx([min(40, 4 ** 4 / ROLLOUTS + lock), 4 ** 2 / ROLLOUTS + lock])
    with_rows = plan_horizon.panels([*cells, cell(2, 2, {"ntp": (9, 8, 10), "dsl": (3, 2, 4)})])
    assert [item["name"] for item in with_rows][2:] == ["S*, ntp, H = 2", "S*, dsl, H = 2"]


def test_without_an_ntp_success_the_form_is_not_drawn():
    cells = [cell(4, 2, {"ntp": (None, 30, None)}), cell(2, 4, {"ntp": (None, 30, None)})]
    (item,) = plan_horizon.panels(cells)
    assert all(math.isnan(value) for value in item["predicted"]["per skill: 1/(P0 G B) + L"])


def test_the_verdict_table_shows_both_cells_with_their_intervals():
    rows = plan_horizon.judge([cell(4, 2, {"dsl": (20, 16, 24)}), cell(2, 4, {"dsl": (6, 4, 8)})])
    text = to_markdown(plan_horizon.table(rows))
    assert "dsl at equal H x tau: 4x2 -> 2x4" in text and "20 [16, 24]" in text and "6 [4, 8]" in text
    assert "| holds |" in text


@pytest.mark.parametrize("tau", [2, 3, 4])
@pytest.mark.parametrize("H", [2, 3, 4])
def test_the_horizon_sweep_has_a_world_at_every_cell_with_skills_of_exactly_tau_lines(H, tau):
    world = CodeWorldPlan(n_skills=6, family_skills=4, skills_per_program=H, lines_per_skill=tau, n_families=8)
    assert world.quantities == {"Z": 6, "Z_eps": 4, "H": H, "tau": float(tau)}
    assert len(world.families("heldout")) == 2


def test_plot_plan_over_run_directories_draws_the_horizon_and_writes_its_verdicts(tmp_path, capsys):
    runs = []
    for H, tau, dsl in ((4, 2, (20, 16, 24)), (2, 4, (6, 4, 8))):
        runs.append(tmp_path / f"h{H}t{tau}")
        runs[-1].mkdir()
        (runs[-1] / "summary.json").write_text(json.dumps(cell(H, tau, {"ntp": (10, 8, 12), "dsl": dsl})))
    out = tmp_path / "figures"
    assert main(["plot", "plan", *map(str, runs), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["panels"] == 2 and (out / "theory_vs_practice.pdf").exists()
    assert {row["arm"]: row["verdict"] for row in result["horizon"]} == {"ntp": "holds", "dsl": "holds"}
    assert "| holds |" in (out / "horizon.md").read_text()
    (runs[1] / "summary.json").write_text("{}")                                  # not a finished study
    assert main(["plot", "plan", *map(str, runs), "--out", str(out), "--json"]) == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["field"] == "source"
