"""What a model's samples on CodeWorld-Plan say about how it plans, measured before RL: the mediators between the
mid-training corpus and RL's speed.

Each sampled body is parsed into the skills it writes (:meth:`~ra3lab.codeworld.CodeWorldPlan.parse`).
``coherence`` is the share of samples that parse; of those, ``z_eps_mass`` is the share of their skills in Z_eps,
``train_plan_share`` the share that write a plan of a train family (the corpus's plans: lock-in when RL needs
another), ``target_plan_share`` the share that write the plan of the task's own family, and ``plans`` the most
frequent plans written, with their counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ra3lab.codeworld import CodeWorldPlan

TOP_PLANS = 5


def body_of(completion: str) -> list[str]:
    """The body lines of a completion (a function body continues the prompt): until the first unindented line."""
    lines = []
    for line in completion.split("\n"):
        if line.strip() and not line.startswith(" "):
            break
        lines.append(line)
    return lines


def plan_profile(world: CodeWorldPlan, completions: Sequence[str], targets: Sequence[tuple[str, ...]]) -> dict:
    """The mediators of ``completions``, each written for a task whose family's plan is ``targets[i]``."""
    plans = [world.parse(body_of(text)) for text in completions]
    parsed = [(plan, target) for plan, target in zip(plans, targets, strict=True) if plan is not None]
    train = {world.plans[family] for family in world.families("train")}
    skills = [name for plan, _ in parsed for name in plan]

    def share(hits: int, total: int) -> float | None:
        return hits / total if total else None

    return {"coherence": share(len(parsed), len(plans)),
            "z_eps_mass": share(sum(name in world.family for name in skills), len(skills)),
            "train_plan_share": share(sum(plan in train for plan, _ in parsed), len(parsed)),
            "target_plan_share": share(sum(plan == target for plan, target in parsed), len(parsed)),
            "plans": [{"plan": list(plan), "count": count}
                      for plan, count in Counter(plan for plan, _ in parsed).most_common(TOP_PLANS)]}
