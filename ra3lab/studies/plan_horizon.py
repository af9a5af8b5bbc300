"""The horizon prediction across CodeWorld-Plan studies, an analogue of Theorem 3.6 in practice.

A program of H skills of tau lines each is H decisions for a policy that decides once per skill (the DSL, teacher
comments, RA3's thoughts) and about H x tau for one that decides per line (NTP, the base). With P0 = |Z_hat|^-H and
S* = 1 / (P0 G B) + L for the first, the theory predicts, as tau grows:

- at equal total lines H x tau (``at="H x tau"``): S* of a per-skill arm ``falls`` (H falls), a per-line arm's is
  ``unchanged`` (as many decisions);
- at equal H (``at="H"``): a per-skill arm's S* is ``unchanged``, a per-line arm's ``rises`` (more decisions).

A cell is one ``codeworld_plan`` summary; two cells equal in the compared quantity and different in tau are a
pair, read from the smaller tau to the larger. Per pair and arm, S* of the two cells (with their stratified-bootstrap
intervals over seeds) gives the measured direction: ``falls`` where the larger tau's interval lies wholly below the
smaller's, ``rises`` where wholly above, ``unchanged`` where they overlap. The verdict is ``holds`` where measured
and predicted agree, ``undecided`` where a direction was predicted and the intervals overlap (the pair is too weak to
tell), ``contradicted`` otherwise, and ``stopped`` where a gate stopped either study (:mod:`ra3lab.studies.gates`:
the base cannot write the skills, or RL does not learn). An ``unchanged`` that holds is a null: it holds the more
easily the wider the intervals.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from ra3lab.ra3.arms import Arm
from ra3lab.studies.codeworld_plan import at_budget, interval, predicted_steps, sweep_lock_in
from ra3lab.studies.stages.sources import TEACHER_PREFIX

PER_SKILL = ("dsl", "oracle")   # references that decide once per skill; teacher_s<share> and RA3 arms too
FALLS, RISES, UNCHANGED = "falls", "rises", "unchanged"
PREDICTED = {("H x tau", True): FALLS, ("H x tau", False): UNCHANGED,     # (at, per skill) -> S* as tau grows
             ("H", True): UNCHANGED, ("H", False): RISES}


def decides_per_skill(arm: str) -> bool:
    """Whether an arm's policy decides once per skill (a DSL call, a teacher's or RA3's thought) rather than per
    line."""
    return arm in PER_SKILL or arm.startswith(TEACHER_PREFIX) or Arm.parse(arm).kind == "ra3"


def shape(summary: dict) -> tuple[int, float]:
    """(H, tau) of a cell: skills per plan and the family skills' mean template lines."""
    return int(summary["world"]["H"]), float(summary["world"]["tau"])


def held(summary: dict, at: str) -> float:
    """The quantity a comparison holds equal across a pair: total lines H x tau (``"H x tau"``) or H (``"H"``)."""
    H, tau = shape(summary)
    return H * tau if at == "H x tau" else float(H)


def direction(first: tuple[float, float, float], second: tuple[float, float, float]) -> str:
    """How ``second``'s (point, low, high) lies against ``first``'s: wholly below (``falls``), wholly above
    (``rises``) or overlapping (``unchanged``). Never reached is inf: reached against never reached is a direction."""
    if second[2] < first[1]:
        return FALLS
    if second[1] > first[2]:
        return RISES
    return UNCHANGED


def verdict(predicted: str, measured: str, gated: bool = True) -> str:
    """``holds`` where they agree; ``undecided`` where a direction was predicted and the intervals overlap;
    ``contradicted`` otherwise; ``stopped`` where a gate stopped either study (not ``gated``): its curves compare
    nothing."""
    if not gated:
        return "stopped"
    if predicted == measured:
        return "holds"
    return "undecided" if measured == UNCHANGED else "contradicted"


def pairs(cells: list[dict], at: str) -> list[tuple[dict, dict]]:
    """Pairs of cells equal in ``held(cell, at)`` and different in tau, the smaller tau first."""
    ordered = sorted(cells, key=lambda cell: (held(cell, at), shape(cell)[1]))
    return [(a, b) for a, b in itertools.combinations(ordered, 2)
            if math.isclose(held(a, at), held(b, at)) and shape(a)[1] < shape(b)[1]]


def shared_arms(cells: list[dict]) -> list[str]:
    """The arms RLVR ran from in every one of ``cells``, in the first cell's order."""
    return [arm for arm in cells[0]["steps_to_threshold"]["absolute"]
            if all(arm in cell["steps_to_threshold"]["absolute"] for cell in cells)]


def judge(cells: list[dict]) -> list[dict]:
    """One row per comparison (``at``: equal ``H x tau``, then equal ``H``), pair (:func:`pairs`) and arm that RLVR
    ran from in both cells: (H, tau) of each cell, each cell's S* (point, low, high; inf: never reached), the measured
    and predicted directions and the verdict."""
    rows = []
    for at in ("H x tau", "H"):
        for a, b in pairs(cells, at):
            for arm in shared_arms([a, b]):
                first, second = (interval(cell["steps_to_threshold"]["absolute"][arm]) for cell in (a, b))
                per_skill, measured = decides_per_skill(arm), direction(first, second)
                predicted, gated = PREDICTED[at, per_skill], all(cell.get("gates_passed", True) for cell in (a, b))
                rows.append({"at": at, "arm": arm, "decides": "per skill" if per_skill else "per line",
                             "H": [shape(a)[0], shape(b)[0]], "tau": [shape(a)[1], shape(b)[1]],
                             "S*": [list(first), list(second)], "measured": measured, "predicted": predicted,
                             "gates_passed": [cell.get("gates_passed", True) for cell in (a, b)],
                             "verdict": verdict(predicted, measured, gated)})
    return rows


def panels(cells: list[dict]) -> list[dict]:
    """Per comparison (equal H x tau, then equal H), group of two cells or more and arm: S* against tau, measured
    with its interval next to the per-skill form 1 / (|Z_hat|^-H G B) + L (L:
    :func:`~ra3lab.studies.codeworld_plan.sweep_lock_in`); a threshold never reached is drawn at the budget."""
    lock, budget = sweep_lock_in(cells), max(cell["rlvr_steps"] for cell in cells)
    items = []
    for at in ("H x tau", "H"):
        groups: dict[float, list[dict]] = {}
        for cell in cells:
            groups.setdefault(held(cell, at), []).append(cell)
        for value, group in sorted(groups.items()):
            if len(group) < 2:
                continue
            group.sort(key=lambda cell: shape(cell)[1])
            for arm in shared_arms(group):
                rows = [interval(cell["steps_to_threshold"]["absolute"][arm]) for cell in group]
                items.append({"name": f"S*, {arm}, {at} = {value:g}", "x": [shape(cell)[1] for cell in group],
                              "xlabel": "tau (lines per skill)", "ylabel": "RLVR steps to threshold",
                              "measured": [at_budget(row[0], budget) for row in rows],
                              "low": [at_budget(row[1], budget) for row in rows],
                              "high": [at_budget(row[2], budget) for row in rows],
                              "predicted": {"per skill: 1/(P0 G B) + L": [
                                  math.nan if math.isnan(lock) else at_budget(predicted_steps(cell, arm, lock), budget)
                                  for cell in group]}})
    return items


def table(rows: list[dict]) -> pd.DataFrame:
    """The verdicts of :func:`judge` as a table: a row per comparison, pair and arm, S* of each cell with its
    interval."""
    records = {f"{row['arm']} at equal {row['at']}: {row['H'][0]}x{row['tau'][0]:g} -> {row['H'][1]}x{row['tau'][1]:g}":
               {"decides": row["decides"],
                **{key: value for cell, (point, low, high) in zip(("S* smaller tau", "S* larger tau"), row["S*"])
                   for key, value in ((cell, point), (f"{cell}_low", low), (f"{cell}_high", high))},
                "measured": row["measured"], "predicted": row["predicted"], "verdict": row["verdict"]}
               for row in rows}
    frame = pd.DataFrame.from_dict(records, orient="index")
    frame.index.name = "arm, comparison: H x tau -> H x tau"
    return frame
