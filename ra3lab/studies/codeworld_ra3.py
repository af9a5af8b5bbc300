"""RA3 on CodeWorld: does learning where to think beat next-token prediction, and do thoughts land on intents?

A tiny Llama-style model is pre-trained on CodeWorld programs with few intent comments (the base),
then mid-trained on a comment-free corpus in one arm each: NTP; RA3 for every penalty c; and the
controls: oracle comments at every true skill boundary + NTP (the upper reference), ``infuse0`` (RA3's
rounds with no E-step: what the E-step adds; its first round's thoughts are the base's own placement,
``base_placement`` in the summary), and ``random``: as many
intent comments per program as RA3 (first c) wrote, at random lines + NTP. Every arm is evaluated on
held-out programs (code NLL with and without thinking, where its thoughts go) and held-out tasks
(sampled pass@k and decision-greedy pass@1 in the sandbox, with the thought and truncation rates of
generation). Each arm's models are saved in its folder of the run (:class:`~ra3lab.ra3.arms.Arm`) for
post-training.
"""

from __future__ import annotations

import random

import numpy as np
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig

from ra3lab.codeworld import Program
from ra3lab.errors import check, check_choice
from ra3lab.evaluation import SandboxPool
from ra3lab.evaluation.solve import TRUNCATION_LIMIT
from ra3lab.execute import runs_root
from ra3lab.lm import LineCodec, train_tokenizer
from ra3lab.log import say
from ra3lab.plots.style import figure
from ra3lab.ra3 import em
from ra3lab.ra3.arms import BASE, INFUSE0, Arm
from ra3lab.ra3.estep import Corpus, EStepConfig
from ra3lab.ra3.evaluate import heldout_nll
from ra3lab.ra3.metrics import boundary_scores, names_intent, names_next_lines
from ra3lab.ra3.rollout import sample_thoughts
from ra3lab.studies.midtraining import (
    arm_model,
    arms_of,
    evaluate_arm,
    log_estep_curves,
    pretrained_base,
    ra3_placements,
    validate_method,
)

REFERENCES = ("ntp", "oracle", "infuse0", "random")
HEADER = 2      # def line + docstring: context, no thought before them


def validate(config: DictConfig) -> None:
    for key in ("pretrain", "midtrain", "heldout"):
        check(config.data[key] >= 4, f"data.{key}", config.data[key], "need at least 4 programs")
    for arm in config.references:
        check_choice("references", arm, REFERENCES)
    check(isinstance(config.eval.lookahead_probe, int) and config.eval.lookahead_probe >= 0, "eval.lookahead_probe",
          config.eval.lookahead_probe, "must be an integer >= 0 (0: no prior/posterior probe)")
    validate_method(config)
    instantiate(config.env)


def corpus(programs: list[Program]) -> Corpus:
    """Comment-free programs as snippets: thoughts may go before body lines; truth = skill starts."""
    snippets = [program.lines(comments=False) for program in programs]
    decisions = [[t >= HEADER for t in range(len(s))] for s in snippets]
    truth = [{HEADER + b for b in program.boundaries} for program in programs]
    return Corpus(snippets, decisions, truth)


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


def hindsight(model, codec: LineCodec, held: Corpus, programs: list[Program], config: DictConfig,
              estep: EStepConfig) -> dict:
    """What q's thoughts on held-out code say, prior-style (k = 0) against posterior-style (k =
    ``eval.lookahead_probe``): the share naming the intent of the skill they precede and the share naming
    something the next k lines introduce (:mod:`ra3lab.ra3.metrics`); empty when the probe is 0."""
    k = config.eval.lookahead_probe
    if k == 0:
        return {}
    intents = [{HEADER + i: p.phrases[s] for i, s in enumerate(p.line_skill)} for p in programs]
    out = {}
    for name, lookahead in (("prior", 0), ("posterior", k)):
        groups = sample_thoughts(model, codec, held.snippets, held.decisions, repeats=config.eval.elbo_samples,
                                 max_thought_tokens=estep.max_thought_tokens, seed=int(config.seed),
                                 lookahead=lookahead)
        rollouts = [rollout for group in groups for rollout in group]
        out[f"{name}_names_intent"] = names_intent(rollouts,
                                                   [i for i in intents for _ in range(config.eval.elbo_samples)])
        out[f"{name}_names_next_lines"] = names_next_lines(rollouts, window=max(k, 1))
        out[f"{name}_thoughts"] = sum(len(rollout.thoughts) for rollout in rollouts)
    return out


def matched_placements(programs: list[Program], counts: list[int], seed: int) -> list[set[int]]:
    """Per program, ``counts[i]`` body lines drawn at random (seeded): random placement matched to RA3's counts."""
    rng = random.Random(seed)
    return [set(rng.sample(range(len(p.body)), min(n, len(p.body)))) for p, n in zip(programs, counts)]


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()      # no bar per saved checkpoint
    seed = int(config.seed)
    world = instantiate(config.env)
    pretrain = world.sample(config.data.pretrain, "train", seed=seed * 10 + 1)
    midtrain = world.sample(config.data.midtrain, "train", seed=seed * 10 + 2, comment_fraction=0.0)
    heldout = world.sample(config.data.heldout, "heldout", seed=seed * 10 + 3, comment_fraction=0.0)
    tokenizer = train_tokenizer([line for p in pretrain + midtrain for line in p.lines()],
                                vocab_size=config.tokenizer.vocab_size, cache_dir=runs_root() / ".cache" / "tokenizers")
    codec = LineCodec(tokenizer)
    estep = EStepConfig.of(config.estep)
    base = pretrained_base(config, tokenizer, codec, [p.lines() for p in pretrain], BASE.folder(run.path))
    train, held = corpus(midtrain), corpus(heldout)
    truth = train.truth
    assert truth is not None, "corpus() gives CodeWorld's boundary lines"
    tasks = [program.task() for program in heldout]
    arms = arms_of(config)
    references = {"ntp": [p.lines(comments=False) for p in midtrain], "oracle": [p.oracle_lines() for p in midtrain]}

    def placements() -> list[set[int]]:
        return matched_placements(midtrain, [len(lines) for lines in ra3_placements(config, run.path)], seed)

    with SandboxPool(workers=config.eval.workers) as pool:
        def one_arm(index: int, arm: Arm) -> dict:
            say("codeworld_ra3", f"arm {arm} ({index + 1}/{len(arms)})")
            if arm.name == "random":
                references["random"] = [random_comments(p, chosen) for p, chosen in zip(midtrain, placements())]
            model, result = arm_model(arm, base, tokenizer, codec, train, references, config, estep, run.path)
            result.update(heldout_nll(model, codec, held, config.eval.elbo_samples, estep.max_thought_tokens,
                                      seed=seed))
            result.update(evaluate_arm(model, tokenizer, tasks, pool, config, estep))
            result.update(hindsight(model, codec, held, heldout, config, estep))
            say("codeworld_ra3", f"arm {arm}: nll plain {result['nll_plain']:.3f}, elbo {result['nll_elbo']:.3f}, "
                                 f"pass@1 {result['pass@1']:.2f}, thought rate in generation "
                                 f"{result['thought_rate']:.2f}, truncated {result['truncation_rate']:.2f}")
            return {"arm": arm.name, **result}

        rows = run.map(one_arm, arms, "CodeWorld arms", "eval")
    log_estep_curves(run, arms)
    by_arm = {row["arm"]: row for row in rows}
    random_placement = (boundary_scores([{HEADER + i for i in chosen} for chosen in placements()], truth)
                        if "random" in by_arm else None)
    figures = draw(run, by_arm, list(config.cs), random_placement)
    boundary_rate = sum(map(len, truth)) / sum(map(sum, train.decisions))
    base_placement = em.last_round(INFUSE0.folder(run.path))[1][0]["infused"] if INFUSE0 in arms else None
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
