"""The whole chain at quick scale, each step reusing or resuming its run: the theory check, T4's regret surface as
a sweep, then the CodeWorld-Plan study (the base model, NTP, teacher, skill-DSL and RA3 mid-training, RLVR from
each over seeds, the gates and the pruning predictions), and the figures. These are the runs the appendix pins
(paper/runs.yaml), so that `make paper` follows."""

from __future__ import annotations

from pathlib import Path

from ra3lab.config import compose_experiment
from ra3lab.execute import execute, runs_root
from ra3lab.log import say
from ra3lab.plots import paper
from ra3lab.studies.check import theory_check
from ra3lab.sweep.grid import run_sweep

SURFACE = "t4_budget_penalty"       # the sweep the appendix's heatmap reads (paper/runs.yaml)


def demo(quick: bool = True, out: Path = Path("paper/figures")) -> dict:
    """Run every step (finished runs are reused, interrupted ones resume); returns where the results are."""
    say("demo", "1/4 theory check")
    theory = theory_check(quick=quick)
    say("demo", f"2/4 T4's regret surface as a sweep ({SURFACE})")
    surface = run_sweep(SURFACE, quick=quick)
    say("demo", "3/4 CodeWorld-Plan: mid-training arms, RLVR from each, gates and predictions")
    study = execute("codeworld_plan", compose_experiment("codeworld_plan", quick=quick))
    say("demo", "4/4 figures")
    run_dir = Path(study["run_dir"])
    figures = paper.theory(paper.latest_summaries(runs_root()), out)["figures"]
    figures += paper.plan([run_dir], out)["figures"]
    figures += paper.convergence(run_dir, out, threshold=study["threshold"]["absolute"])["figures"]
    for path in figures:
        say("demo", f"figure: {path}")
    return {"theory_passed": theory["passed"], "surface_sweep": surface["sweep_dir"],
            "codeworld_plan": study["run_dir"], "gates": study["gates"],
            "stopped": study["stopped"], "verdicts": study["verdicts"],
            "probability_of_improvement": study["probability_of_improvement"], "figures": figures}
