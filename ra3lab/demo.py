"""The whole chain at quick scale, each step reusing or resuming its run: the theory check, CodeWorld
pre-training with NTP and RA3 mid-training, RLVR from each checkpoint, and the appendix figures."""

from __future__ import annotations

from pathlib import Path

from ra3lab.config import compose_experiment
from ra3lab.execute import execute, runs_root
from ra3lab.log import say
from ra3lab.plots import paper
from ra3lab.studies.check import theory_check


def demo(quick: bool = True, out: Path = Path("paper/figures")) -> dict:
    """Run every step (finished runs are reused, interrupted ones resume); returns where the results are."""
    say("demo", "1/4 theory check")
    theory = theory_check(quick=quick)
    say("demo", "2/4 CodeWorld: pre-training, NTP and RA3 mid-training")
    midtraining = execute("codeworld_ra3", compose_experiment("codeworld_ra3", quick=quick))
    say("demo", "3/4 RLVR from the base, NTP and RA3 checkpoints")
    rlvr = execute("codeworld_rlvr", compose_experiment("codeworld_rlvr", quick=quick))
    say("demo", "4/4 figures")
    figures = paper.theory(runs_root(), out)["figures"]
    figures += paper.convergence(Path(rlvr["run_dir"]), out, threshold=rlvr["threshold"])["figures"]
    for path in figures:
        say("demo", f"figure: {path}")
    return {"theory_passed": theory["passed"], "codeworld_ra3": midtraining["run_dir"],
            "codeworld_rlvr": rlvr["run_dir"], "predictions": midtraining["predictions"],
            "probability_of_improvement": rlvr["probability_of_improvement"], "figures": figures}
