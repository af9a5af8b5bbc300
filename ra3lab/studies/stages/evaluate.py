"""Stage ``evaluate``: one arm's held-out results: code NLL with and without thinking (the ELBO), sampled
pass@k (and decision-greedy pass@1) in the sandbox with thought and truncation rates, and, when
``eval.lookahead_probe`` > 0 on CodeWorld, what its thoughts say (prior-style against posterior-style q). On
CodeWorld-Plan, pass@k of the same held-out tasks with their steps given too (``pass@1/steps`` ...): the control
that tells planning from typing."""

from __future__ import annotations

from collections.abc import Callable

import transformers
from omegaconf import DictConfig

from ra3lab.evaluation import SandboxPool
from ra3lab.evaluation.solve import Evaluation
from ra3lab.lm import LineCodec, load_model, load_tokenizer
from ra3lab.lm.generate import generator_for
from ra3lab.log import say
from ra3lab.ra3.evaluate import heldout_nll
from ra3lab.ra3.metrics import names_intent, names_next_lines
from ra3lab.ra3.rollout import sample_thoughts
from ra3lab.runtime import place
from ra3lab.studies.common import make_env
from ra3lab.studies.mediators import plan_profile
from ra3lab.studies.midtraining import evaluate_arm
from ra3lab.studies.stages import as_stage, model_path
from ra3lab.studies.stages.midtrain import arm_of
from ra3lab.studies.stages.sources import HEADER, CodeWorldSource, PlanSource, source_of

KEYS = ["eval", "estep.max_thought_tokens"]
CONTROL = "/steps"      # CodeWorld-Plan: the metrics of the same held-out tasks with their steps in the prompt


def keys(config: DictConfig) -> list[str]:
    return ["arm", *source_of(config).keys("heldout"), *KEYS]


def upstream(config: DictConfig) -> dict:
    return {"model": ("midtrain", as_stage(config, "midtrain"))}


def validate(config: DictConfig) -> None:
    arm_of(config)
    source_of(config).validate()


def hindsight(model, codec: LineCodec, held, heldout: list, config: DictConfig) -> dict:
    """What q's thoughts on held-out code say, prior-style (k = 0) against posterior-style (k =
    ``eval.lookahead_probe``): the share naming the intent of the skill they precede and the share naming
    something the next k lines introduce (:mod:`ra3lab.ra3.metrics`); empty when the probe is 0."""
    k, samples = config.eval.lookahead_probe, config.eval.elbo_samples
    if k == 0:
        return {}
    intents = [{HEADER + i: p.phrases[s] for i, s in enumerate(p.line_skill)} for p in heldout]
    out = {}
    for name, lookahead in (("prior", 0), ("posterior", k)):
        groups = sample_thoughts(model, codec, held.snippets, held.decisions, repeats=samples,
                                 max_thought_tokens=config.estep.max_thought_tokens, seed=int(config.seed),
                                 lookahead=lookahead)
        rollouts = [rollout for group in groups for rollout in group]
        out[f"{name}_names_intent"] = names_intent(rollouts, [i for i in intents for _ in range(samples)])
        out[f"{name}_names_next_lines"] = names_next_lines(rollouts, window=max(k, 1))
        out[f"{name}_thoughts"] = sum(len(rollout.thoughts) for rollout in rollouts)
    return out


def plan_describer(source: PlanSource) -> Callable[[Evaluation], dict]:
    """The mediators (:mod:`ra3lab.studies.mediators`) of an evaluation of the held-out tasks of ``source``."""
    world, programs = make_env(source.config.env), source.programs("heldout")

    def describe(evaluation: Evaluation) -> dict:
        texts = evaluation.texts
        targets = [p.skills for p in programs for _ in range(texts.shape[1])]
        return plan_profile(world, list(texts.ravel()), targets)

    return describe


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    arm, folder = arm_of(config), model_path(config, "model")
    model, tokenizer = place(load_model(folder), config.get("runtime")), load_tokenizer(folder)
    source, codec = source_of(config), LineCodec(tokenizer, model.config.vocab_size)
    held, (tasks, suffix), thought_tokens = source.heldout(), source.tasks(), int(config.estep.max_thought_tokens)
    with SandboxPool(workers=config.eval.workers) as pool:
        result = heldout_nll(model, codec, held, config.eval.elbo_samples, thought_tokens, seed=int(config.seed))
        describe = plan_describer(source) if isinstance(source, PlanSource) else None
        generator = generator_for(config.get("generation"), model, tokenizer)
        result.update(evaluate_arm(model, tokenizer, tasks, pool, config, thought_tokens, suffix=suffix,
                                   describe=describe, generator=generator))
        if isinstance(source, PlanSource):
            result.update(evaluate_arm(model, tokenizer, source.control_tasks(), pool, config, thought_tokens,
                                       suffix=CONTROL, generator=generator))
    if isinstance(source, CodeWorldSource):
        result.update(hindsight(model, codec, held, source.programs("heldout"), config))
    say("evaluate", f"arm {arm}: nll plain {result['nll_plain']:.3f}, elbo {result['nll_elbo']:.3f}, pass@1 "
                    f"{result[f'pass@1{suffix}']:.2f}, thought rate in generation "
                    f"{result[f'thought_rate{suffix}']:.2f}, truncated {result[f'truncation_rate{suffix}']:.2f}")
    return {"arm": arm.name, "evaluation": result}
