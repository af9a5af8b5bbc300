"""RA3 on CodeWorld: does learning where to think beat next-token prediction, and do thoughts land on intents?

A tiny Llama-style model is pre-trained on CodeWorld programs with few intent comments (the base),
then mid-trained on a comment-free corpus in one arm each: NTP; RA3 for every penalty c; and the
controls: oracle comments at every true skill boundary + NTP (the upper reference), ``infuse0`` (RA3's
rounds with no E-step: what the E-step adds; its first round's thoughts are the base's own placement,
``base_placement`` in the summary), and ``random``: as many
intent comments per program as RA3 (first c) wrote, at random lines + NTP. Every arm is evaluated on
held-out programs (code NLL with and without thinking, where its thoughts go) and held-out tasks
(sampled pass@k and decision-greedy pass@1 in the sandbox, with the thought and truncation rates of
generation).

The study is a composition of stages (:mod:`ra3lab.studies.stages`): one ``pretrain`` run, one ``midtrain``
and one ``evaluate`` run per arm, each reused when it exists (so another study or sweep point with the same
base or arm shares it); this run gathers their results, checks the predictions and draws the figure.
"""

from __future__ import annotations

import random

import numpy as np
from omegaconf import DictConfig

from ra3lab.codeworld import Program
from ra3lab.errors import check
from ra3lab.evaluation.solve import TRUNCATION_LIMIT
from ra3lab.plots.style import figure
from ra3lab.ra3 import em
from ra3lab.ra3.arms import INFUSE0, Arm
from ra3lab.ra3.metrics import boundary_scores
from ra3lab.stages import upstream_dir
from ra3lab.studies.common import make_env
from ra3lab.studies.midtraining import arms_of, log_estep_curves, ra3_placements, validate_method
from ra3lab.studies.stages import arm_rows, arm_stages
from ra3lab.studies.stages.sources import HEADER, CodeWorldSource, as_corpus, offers, reference_choices, source_of


def validate_pipeline(config: DictConfig) -> None:
    """The keys every CodeWorld pipeline stage shares (data sizes, references, the E-step, evaluation, env)."""
    for key in ("pretrain", "midtrain", "heldout"):
        check(config.data[key] >= 4, f"data.{key}", config.data[key], "need at least 4 programs")
    source = source_of(config)
    for arm in config.references:
        check(arm == "infuse0" or offers(source, arm), "references", arm,
              f"choose one of {reference_choices(source)}, infuse0")
    check(isinstance(config.eval.lookahead_probe, int) and config.eval.lookahead_probe >= 0, "eval.lookahead_probe",
          config.eval.lookahead_probe, "must be an integer >= 0 (0: no prior/posterior probe)")
    validate_method(config)
    make_env(config.env)


def validate(config: DictConfig) -> None:
    validate_pipeline(config)


def upstream(config: DictConfig) -> dict:
    """Per arm, its ``midtrain`` run (``train_<arm>``) and its ``evaluate`` run (``eval_<arm>``)."""
    return arm_stages(config)


def random_comments(program: Program, chosen: set[int]) -> list[str]:
    """The program with an intent comment before each body line in ``chosen``, naming the intent of
    the skill that line belongs to (placement random, text right)."""
    lines = list(program.header)
    for index, line in enumerate(program.body):
        if index in chosen:
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(f"{indent}# {program.phrases[program.line_skill[index]]}")
        lines.append(line)
    return lines


def matched_placements(programs: list[Program], counts: list[int], seed: int) -> list[set[int]]:
    """Per program, ``counts[i]`` body lines drawn at random (seeded): random placement matched to RA3's counts."""
    rng = random.Random(seed)
    return [set(rng.sample(range(len(p.body)), min(n, len(p.body)))) for p, n in zip(programs, counts)]


def run(config: DictConfig, run) -> dict:
    arms, rows = arms_of(config), arm_rows(config)
    for step, row in enumerate(rows):
        run.log(step, **{f"eval/{key}": value for key, value in row.items()})
    folders = {arm: arm.folder(upstream_dir(config, f"train_{arm}")) for arm in arms}
    log_estep_curves(run, folders)
    by_arm = {row["arm"]: row for row in rows}
    midtrain = CodeWorldSource(config).programs("midtrain")
    truth = as_corpus(midtrain).truth
    assert truth is not None, "as_corpus() gives CodeWorld's boundary lines"
    random_placement = None
    if "random" in by_arm:
        ra3_run = upstream_dir(config, f"train_{Arm.ra3(config.cs[0])}")
        chosen = matched_placements(midtrain, [len(lines) for lines in ra3_placements(config, ra3_run)],
                                    int(config.seed))
        random_placement = boundary_scores([{HEADER + i for i in lines} for lines in chosen], truth)
    figures = draw(run, by_arm, list(config.cs), random_placement)
    decisions = as_corpus(midtrain).decisions
    boundary_rate = sum(map(len, truth)) / sum(map(sum, decisions))
    base_placement = em.last_round(folders[INFUSE0])[1][0]["infused"] if INFUSE0 in folders else None
    return {"arms": by_arm, "random_placement": random_placement, "base_placement": base_placement,
            "boundary_rate": boundary_rate,
            "predictions": predictions(by_arm, list(config.cs), random_placement),
            "warnings": warnings(by_arm, config), "figures": [str(path) for path in figures]}


def warnings(by_arm: dict, config: DictConfig) -> list[str]:
    """Arms whose truncation rate exceeds TRUNCATION_LIMIT under any decoding: their pass rates may measure the
    budget."""
    found = []
    for arm, row in by_arm.items():
        for key in ("truncation_rate", "decision_greedy_truncation_rate"):
            if row.get(key) is not None and row[key] > TRUNCATION_LIMIT:
                found.append(f"{arm}: {key} {row[key]:.3f} > {TRUNCATION_LIMIT} (eval.max_new_tokens = "
                             f"{config.eval.max_new_tokens}): pass rates may measure the budget, not the model")
    return found


def predictions(by_arm: dict, cs: list[float], random_placement: dict | None) -> dict:
    """What the paper predicts, checked against this run, per c (None where the arm compared with is missing)."""
    ra3 = {f"c={c:g}": by_arm[Arm.ra3(c).name] for c in cs}
    rates = [row["infused_rate"] for row in ra3.values()]
    ntp, infuse0 = by_arm.get("ntp"), by_arm.get("infuse0")

    def each(test, other) -> dict | None:
        return None if other is None else {name: bool(test(row, other)) for name, row in ra3.items()}

    return {
        "ra3_elbo_nll_below_ntp_nll": each(lambda row, o: row["nll_elbo"] < o["nll_plain"], ntp),
        "ra3_sampled_pass_at_1_above_ntp": each(lambda row, o: row["pass@1"] > o["pass@1"], ntp),
        "ra3_boundary_f1_above_random_placement": each(
            lambda row, o: row["infused_boundary_f1"] > o["boundary_f1"], random_placement),
        "ra3_boundary_f1_above_infuse0": each(
            lambda row, o: row["infused_boundary_f1"] > o["infused_boundary_f1"], infuse0),
        "thought_rate_falls_with_c": bool(np.all(np.diff([rate for _, rate in sorted(zip(cs, rates))]) <= 0)),
    }


def draw(run, by_arm: dict, cs: list[float], random_placement: dict | None):
    """Held-out NLL and pass@1 per arm; thought rate and boundary F1 against c."""
    fig, (nll, passes, thoughts) = figure(3, width=11.0, height=3.4)
    names = list(by_arm)
    x = np.arange(len(names))
    nll.bar(x - 0.2, [by_arm[a]["nll_plain"] for a in names], 0.4, label="no thoughts (exact)")
    nll.bar(x + 0.2, [by_arm[a]["nll_elbo"] for a in names], 0.4, label="thinking (ELBO bound)")
    nll.set(xticks=x, ylabel="held-out NLL (nats / code token)", title="code likelihood")
    nll.set_xticklabels(names, rotation=45, ha="right")
    nll.legend(fontsize=7)
    passes.bar(x, [by_arm[a]["pass@1"] for a in names], label="sampled")
    if all("decision_greedy_pass@1" in by_arm[a] for a in names):
        passes.plot(x, [by_arm[a]["decision_greedy_pass@1"] for a in names], "kD", ms=4, label="decision-greedy")
    passes.set(xticks=x, ylabel="pass@1 (held-out tasks)", title="tasks solved")
    passes.legend(fontsize=7)
    passes.set_xticklabels(names, rotation=45, ha="right")
    ra3 = [by_arm[Arm.ra3(c).name] for c in cs]
    thoughts.plot(cs, [row["infused_rate"] for row in ra3], "o-", label="thought rate (per line)")
    thoughts.plot(cs, [row["infused_boundary_f1"] for row in ra3], "s-", label="boundary F1")
    if random_placement is not None:
        thoughts.axhline(random_placement["boundary_f1"], color="grey", ls="--", lw=0.8,
                         label="F1, random placement (matched)")
    thoughts.set(xscale="log", xlabel="penalty per thought c", title="where RA3 thinks")
    thoughts.legend(fontsize=7)
    return run.save_figure(fig, "codeworld_ra3")
