"""``ra3lab theory check``: T1-T3 (and T4's headline) as runs, folded into one verdict."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ra3lab.config import compose_experiment

CHECKS = ("t1_regret_decomposition", "t2_pruning", "t3_horizon", "t4_abstraction")
RESIDUAL_TOLERANCE = 1e-9


def theory_check(quick: bool = False, force: bool = False) -> dict:
    """Run each theory experiment (cached runs are reused) and report the numbers the theory is judged by."""
    from ra3lab.execute import execute

    summaries = {}
    for name in CHECKS:
        start = time.time()
        print(f"[theory check] {name} ...", file=sys.stderr, flush=True)
        config = compose_experiment(name, quick=quick)
        summaries[name] = execute(name, config, force=force)
        state = "cached" if summaries[name]["cached"] else f"{time.time() - start:.1f} s"
        print(f"[theory check] {name} done ({state}): {summaries[name]['run_dir']}", file=sys.stderr, flush=True)
    t1, t2, t3, t4 = (summaries[name] for name in CHECKS)
    print("[theory check] figures:", *sorted({str(Path(p).parent) for s in summaries.values() for p in s["figures"]}),
          sep="\n  ", file=sys.stderr)
    verdicts = {
        "lemma_3_2_identity": t1["lemma_3_2_max_residual"] < RESIDUAL_TOLERANCE,
        "thm_3_6_bound_holds": t3["thm_3_6_bound_violations"] == 0,
        "thm_3_6_ordering": t3["thm_3_6_spearman"] > 0.5,
    }
    return {
        "scale": "quick" if quick else "full",
        "lemma_3_2_max_residual": t1["lemma_3_2_max_residual"],
        "lemma_3_2_mc_max_abs_z": t1["mc_max_abs_z"],
        "thm_3_5_slopes": t2["thm_3_5_slopes"],
        "thm_3_5_better_form": t2["thm_3_5_better_form"],
        "thm_3_5_form_distance": t2["thm_3_5_form_distance"],
        "thm_3_6_bound_violations": t3["thm_3_6_bound_violations"],
        "thm_3_6_spearman": t3["thm_3_6_spearman"],
        "thm_3_6_looseness_median": t3["thm_3_6_looseness_median"],
        "abstraction_final_regret": t4["abstraction_final_regret"],
        "primitive_final_regret": t4["primitive_final_regret"],
        "surface_best": t4["surface_best"],
        "verdicts": verdicts,
        "passed": all(verdicts.values()),
        "runs": {name: summary["run_dir"] for name, summary in summaries.items()},
        "figures": [path for summary in summaries.values() for path in summary["figures"]],
    }
