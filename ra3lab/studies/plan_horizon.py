"""The horizon prediction across CodeWorld-Plan studies, an analogue of Theorem 3.6 in practice.

A program of H skills of tau lines each is about H x tau primitive (line) decisions and H skill decisions. A policy
that decides once per skill (the DSL, teacher comments, RA3's thoughts) faces H decisions: its initial success
|Z_hat|^-H rises, and its steps to threshold S* = 1 / (P0 G B) + L fall, as tau grows at fixed H x tau. A policy
that decides per line (NTP, the base) faces about H x tau decisions however they split, so at fixed H x tau its S*
should not fall with tau.

A cell is one ``codeworld_plan`` summary; two cells with the same total lines H x tau and different tau are a pair,
read from the smaller tau to the larger. Per pair and arm, S* of the two cells (with their stratified-bootstrap
intervals over seeds) gives the measured direction: ``falls`` where the larger tau's interval lies wholly below
the smaller's, ``rises`` where wholly above, ``overlaps`` otherwise. Per-skill arms are predicted to fall, per-line
arms not to: ``holds``, ``contradicted``, or ``undecided`` where the intervals overlap (the pair decides nothing).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ra3lab.ra3.arms import Arm
from ra3lab.studies.codeworld_plan import at_budget, interval, predicted_steps, sweep_lock_in
from ra3lab.studies.stages.sources import TEACHER_PREFIX

PER_SKILL = ("dsl", "oracle")   # references that decide once per skill; teacher_s<share> and RA3 arms too
FALLS, RISES, OVERLAPS = "falls", "rises", "overlaps"


def decides_per_skill(arm: str) -> bool:
    """Whether an arm's policy decides once per skill (a DSL call, a teacher's or RA3's thought) rather than per
    line."""
    return arm in PER_SKILL or arm.startswith(TEACHER_PREFIX) or Arm.parse(arm).kind == "ra3"


def shape(summary: dict) -> tuple[int, float]:
    """(H, tau) of a cell: skills per plan and the family skills' mean template lines."""
    return int(summary["world"]["H"]), float(summary["world"]["tau"])


def direction(first: tuple[float, float, float], second: tuple[float, float, float]) -> str:
    """How ``second``'s (point, low, high) lies against ``first``'s: wholly below (``falls``), wholly above
    (``rises``) or ``overlaps``. A value never reached is inf: reached against never reached is a direction."""
    if second[2] < first[1]:
        return FALLS
    if second[1] > first[2]:
        return RISES
    return OVERLAPS


def verdict(per_skill: bool, measured: str) -> str:
    """Per-skill arms are predicted to fall, per-line arms not to; overlapping intervals decide nothing."""
    if measured == OVERLAPS:
        return "undecided"
    return "holds" if (measured == FALLS) == per_skill else "contradicted"


def pairs(cells: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of cells with the same total lines H x tau and different tau, the smaller tau first."""
    ordered = sorted(cells, key=lambda summary: (shape(summary)[0] * shape(summary)[1], shape(summary)[1]))
    return [(a, b) for a, b in itertools.combinations(ordered, 2)
            if math.isclose(np.prod(shape(a)), np.prod(shape(b))) and shape(a)[1] < shape(b)[1]]


def judge(cells: list[dict]) -> list[dict]:
    """One row per pair (:func:`pairs`) and arm that RLVR ran from in both cells: total lines, (H, tau) of each
    cell, each cell's S* (point, low, high; inf: never reached), the measured direction, the predicted one
    (``falls`` per skill, ``does not fall`` per line) and the verdict."""
    rows = []
    for a, b in pairs(cells):
        reached_a, reached_b = (cell["steps_to_threshold"]["absolute"] for cell in (a, b))
        for arm in [name for name in reached_a if name in reached_b]:
            first, second = interval(reached_a[arm]), interval(reached_b[arm])
            measured, per_skill = direction(first, second), decides_per_skill(arm)
            rows.append({"arm": arm, "decides": "per skill" if per_skill else "per line",
                         "total_lines": float(np.prod(shape(a))), "H": [shape(a)[0], shape(b)[0]],
                         "tau": [shape(a)[1], shape(b)[1]], "S*": [list(first), list(second)],
                         "measured": measured, "predicted": FALLS if per_skill else "does not fall",
                         "verdict": verdict(per_skill, measured)})
    return rows


def panels(cells: list[dict]) -> list[dict]:
    """Per arm and total lines with two cells or more, S* against tau, measured with its interval next to the
    per-skill form 1 / (|Z_hat|^-H G B) + L (L: :func:`~ra3lab.studies.codeworld_plan.sweep_lock_in`); a threshold
    never reached is drawn at the budget."""
    lock, budget = sweep_lock_in(cells), max(cell["rlvr_steps"] for cell in cells)
    groups: dict[float, list[dict]] = {}
    for cell in cells:
        groups.setdefault(float(np.prod(shape(cell))), []).append(cell)
    items = []
    for total, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        group.sort(key=lambda cell: shape(cell)[1])
        arms = [arm for arm in group[0]["steps_to_threshold"]["absolute"]
                if all(arm in cell["steps_to_threshold"]["absolute"] for cell in group)]
        for arm in arms:
            rows = [interval(cell["steps_to_threshold"]["absolute"][arm]) for cell in group]
            items.append({"name": f"S*, {arm}, H x tau = {total:g}", "x": [shape(cell)[1] for cell in group],
                          "xlabel": "tau (lines per skill)", "ylabel": "RLVR steps to threshold",
                          "measured": [at_budget(row[0], budget) for row in rows],
                          "low": [at_budget(row[1], budget) for row in rows],
                          "high": [at_budget(row[2], budget) for row in rows],
                          "predicted": {"per skill: 1/(P0 G B) + L": [
                              math.nan if math.isnan(lock) else at_budget(predicted_steps(cell, arm, lock), budget)
                              for cell in group]}})
    return items


def table(rows: list[dict]) -> pd.DataFrame:
    """The verdicts of :func:`judge` as a table: a row per pair and arm, S* of each cell with its interval."""
    records = {f"{row['arm']}: (H, tau) {row['H'][0]}x{row['tau'][0]:g} -> {row['H'][1]}x{row['tau'][1]:g}": {
        "decides": row["decides"],
        **{key: value for cell, (point, low, high) in zip(("S* smaller tau", "S* larger tau"), row["S*"])
           for key, value in ((cell, point), (f"{cell}_low", low), (f"{cell}_high", high))},
        "measured": row["measured"], "predicted": row["predicted"], "verdict": row["verdict"]} for row in rows}
    frame = pd.DataFrame.from_dict(records, orient="index")
    frame.index.name = "arm: cells"
    return frame
