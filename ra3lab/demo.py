"""The whole chain at quick scale, each step reusing or resuming its run: the theory check, then the CodeWorld-Plan
study (the base model, NTP, teacher, skill-DSL and RA3 mid-training, RLVR from each over seeds, the gates and the
pruning predictions), and the appendix figures."""

from __future__ import annotations

from pathlib import Path

from ra3lab.config import compose_experiment
from ra3lab.execute import execute, runs_root
from ra3lab.log import say
from ra3lab.plots import paper
from ra3lab.studies.check import theory_check


def demo(quick: bool = True, out: Path = Path("paper/figures")) -> dict:
    """Run every step (finished runs are reused, interrupted ones resume); returns where the results are."""
    say("demo", "1/3 theory check")
    theory = theory_check(quick=quick)
    say("demo", "2/3 CodeWorld-Plan: mid-training arms, RLVR from each, gates and predictions")
    study = execute("codeworld_plan", compose_experiment("codeworld_plan", quick=quick))
    say("demo", "3/3 figures")
    run_dir = Path(study["run_dir"])
    figures = paper.theory(runs_root(), out)["figures"]
    figures += paper.plan([run_dir], out)["figures"]
    figures += paper.convergence(run_dir, out, threshold=study["threshold"]["absolute"])["figures"]
    for path in figures:
        say("demo", f"figure: {path}")
    return {"theory_passed": theory["passed"], "codeworld_plan": study["run_dir"], "gates": study["gates"],
            "stopped": study["stopped"], "verdicts": study["verdicts"],
            "probability_of_improvement": study["probability_of_improvement"], "figures": figures}
