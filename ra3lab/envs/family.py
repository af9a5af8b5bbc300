"""A task family: a prior p(M) realised as ``B`` sampled MDPs that share one decision set Z."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ra3lab.errors import check_choice
from ra3lab.mdp.smdp import SMDP, MDPBatch, Options, option_models

GRANULARITIES = ("primitive", "abstract")


@dataclass(frozen=True)
class OptionFamily:
    """``B`` tasks M ~ p(M) with primitive actions and a shared set of options.

    mdps: the tasks at primitive level; options: the abstract decision set Z (macro-actions and
    distractors); meta: facts of the generator that experiments may use (e.g. goal states).
    """

    name: str
    mdps: MDPBatch
    options: Options
    meta: dict = field(default_factory=dict, compare=False)

    def decisions(self, granularity: str = "abstract") -> Options:
        """The decision set at a granularity: primitive actions (tau = 1) or the options Z."""
        check_choice("granularity", granularity, GRANULARITIES)
        if granularity == "primitive":
            return Options.primitive(self.mdps.n_actions, self.meta.get("action_names"))
        return self.options

    @cached_property
    def abstract(self) -> SMDP:
        """(B, Z, S, S) option models of every task over Z."""
        return option_models(self.mdps, self.options)

    @cached_property
    def primitive(self) -> SMDP:
        """(B, A, S, S) the tasks as one-step SMDPs over primitive actions."""
        return option_models(self.mdps, self.decisions("primitive"))

    def smdp(self, granularity: str = "abstract") -> SMDP:
        check_choice("granularity", granularity, GRANULARITIES)
        return self.abstract if granularity == "abstract" else self.primitive
