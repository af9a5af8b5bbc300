"""CodeWorld: executable Python programs built from latent skills, with known skill boundaries.

Each program threads a list ``xs`` through skill instances (``skills``), records where every
instance starts, renders a corpus with a fraction of intent comments, and doubles as a
HumanEval-format task whose hidden tests come from running the reference (``programs``, ``world``).
CodeWorld-Plan (``plan``) groups programs into task families whose plan the prompt does not state.
"""

from ra3lab.codeworld.plan import CodeWorldPlan
from ra3lab.codeworld.programs import Program
from ra3lab.codeworld.skills import SKILLS, Skill
from ra3lab.codeworld.world import CodeWorld

__all__ = ["SKILLS", "CodeWorld", "CodeWorldPlan", "Program", "Skill"]
