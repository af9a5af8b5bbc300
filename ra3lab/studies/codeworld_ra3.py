"""RA3 on CodeWorld: does learning where to think beat next-token prediction, and do thoughts land on intents?

A tiny Llama-style model is pre-trained on CodeWorld programs with few intent comments (the base),
then mid-trained on a comment-free corpus in one arm each: NTP; RA3 for every penalty c; and two
teacher-comment references trained by NTP: oracle comments at every true skill boundary (the upper
reference) and as many comments at random lines (the lower). Every arm is evaluated on held-out
programs (code NLL with and without thinking, where its thoughts go) and held-out tasks (pass@1 in
the sandbox). Models are saved under ``checkpoints/<arm>/`` for post-training.
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
from ra3lab.execute import runs_root
from ra3lab.lm import LineCodec, train_tokenizer
from ra3lab.ra3.estep import Corpus
from ra3lab.ra3.evaluate import heldout_nll, pass_at_1
from ra3lab.ra3.metrics import boundary_scores
from ra3lab.studies.common import figure
from ra3lab.studies.midtraining import arm_model, arm_names, log_estep_curves, pretrained_base, say, validate_method

REFERENCES = ("ntp", "oracle", "random")
HEADER = 2      # def line + docstring: context, no thought before them


def validate(config: DictConfig) -> None:
    for key in ("pretrain", "midtrain", "heldout"):
        check(config.data[key] >= 4, f"data.{key}", config.data[key], "need at least 4 programs")
    for arm in config.references:
        check_choice("references", arm, REFERENCES)
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
    checkpoints = run.path / "checkpoints"
    base = pretrained_base(config, tokenizer, codec, [p.lines() for p in pretrain], checkpoints / "base")
    train, held = corpus(midtrain), corpus(heldout)
    tasks = [program.task() for program in heldout]
    arms = arm_names(config)
    rng = random.Random(seed)
    placements = [set(rng.sample(range(len(p.body)), len(p.boundaries))) for p in midtrain]  # as many as skills
    references = {"ntp": [p.lines(comments=False) for p in midtrain], "oracle": [p.oracle_lines() for p in midtrain],
                  "random": [random_comments(p, chosen) for p, chosen in zip(midtrain, placements)]}
    random_placement = boundary_scores([{HEADER + i for i in chosen} for chosen in placements], train.truth)

    with SandboxPool(workers=config.eval.workers) as pool:
        def one_arm(index: int, arm: str) -> dict:
            say(f"arm {arm} ({index + 1}/{len(arms)})")
            model, result = arm_model(arm, base, tokenizer, codec, train, references, config, checkpoints)
            result.update(heldout_nll(model, codec, held, config.eval.elbo_samples, config.estep.max_thought_tokens,
                                      seed=seed))
            result["pass@1"] = pass_at_1(model, tokenizer, tasks, pool, config.eval.max_new_tokens)
            say(f"arm {arm}: nll plain {result['nll_plain']:.3f}, elbo {result['nll_elbo']:.3f}, "
                f"thought rate {result['thought_rate']:.2f}, F1 {result.get('thought_boundary_f1', 0):.2f}, "
                f"pass@1 {result['pass@1']:.2f}")
            return {"arm": arm, **result}

        rows = run.map(one_arm, arms, "CodeWorld arms", "eval")
    log_estep_curves(run, arms, checkpoints)
    by_arm = {row["arm"]: row for row in rows}
    figures = draw(run, by_arm, list(config.cs), random_placement)
    boundary_rate = sum(map(len, train.truth)) / sum(map(sum, train.decisions))
    return {"arms": by_arm, "random_placement": random_placement, "boundary_rate": boundary_rate,
            "predictions": predictions(by_arm, list(config.cs), random_placement),
            "figures": [str(path) for path in figures]}


def predictions(by_arm: dict, cs: list[float], random_placement: dict) -> dict:
    """What the paper predicts, checked against this run (None where the NTP arm is missing)."""
    ra3 = [by_arm[f"ra3_c{c:g}"] for c in cs]
    rates = [row["infused_rate"] for row in ra3]
    ntp = by_arm.get("ntp")
    return {
        "ra3_elbo_nll_below_ntp_nll": None if ntp is None else {
            f"c={c:g}": row["nll_elbo"] < ntp["nll_plain"] for c, row in zip(cs, ra3)},
        "ra3_boundary_f1_above_random_placement": {
            f"c={c:g}": row["infused_boundary_f1"] > random_placement["boundary_f1"] for c, row in zip(cs, ra3)},
        "thought_rate_falls_with_c": bool(np.all(np.diff([rate for _, rate in sorted(zip(cs, rates))]) <= 0)),
    }


def draw(run, by_arm: dict, cs: list[float], random_placement: dict):
    """Held-out NLL and pass@1 per arm; thought rate and boundary F1 against c."""
    fig, (nll, passes, thoughts) = figure(3, width=11.0, height=3.4)
    names = list(by_arm)
    x = np.arange(len(names))
    nll.bar(x - 0.2, [by_arm[a]["nll_plain"] for a in names], 0.4, label="no thoughts (exact)")
    nll.bar(x + 0.2, [by_arm[a]["nll_elbo"] for a in names], 0.4, label="thinking (ELBO bound)")
    nll.set(xticks=x, ylabel="held-out NLL (nats / code token)", title="code likelihood")
    nll.set_xticklabels(names, rotation=45, ha="right")
    nll.legend(fontsize=7)
    passes.bar(x, [by_arm[a]["pass@1"] for a in names])
    passes.set(xticks=x, ylabel="pass@1 (held-out tasks)", title="tasks solved")
    passes.set_xticklabels(names, rotation=45, ha="right")
    ra3 = [by_arm[f"ra3_c{c:g}"] for c in cs]
    thoughts.plot(cs, [row["infused_rate"] for row in ra3], "o-", label="thought rate (per line)")
    thoughts.plot(cs, [row["infused_boundary_f1"] for row in ra3], "s-", label="boundary F1")
    thoughts.axhline(random_placement["boundary_f1"], color="grey", ls="--", lw=0.8, label="F1, random placement")
    thoughts.set(xscale="log", xlabel="penalty per thought c", title="where RA3 thinks")
    thoughts.legend(fontsize=7)
    return run.save_figure(fig, "codeworld_ra3")
