"""Mid-training arms shared by the CodeWorld and the real-corpus studies.

The arms (:class:`~ra3lab.ra3.arms.Arm`): ``base`` (no mid-training), a reference trained by next-token
prediction on its own rendering of the corpus (``ntp``: the plain code; ``oracle`` / ``random``: teacher
comments), ``infuse0`` (RA3's rounds with no E-step: q is pi itself, what the E-step adds is the difference),
and RA3's EM rounds per penalty c. ``random`` comes last: it places as many comments per snippet as the RA3 arm
of the first c infused. Each trained arm's models are saved in its folder of the run directory
(:meth:`Arm.folder <ra3lab.ra3.arms.Arm.folder>`), which makes a run resumable inside an arm and gives
post-training its starting points. The E-step settings are one :class:`~ra3lab.ra3.estep.EStepConfig`, built
from ``estep:`` once per run.

Every arm is evaluated the same way (:func:`evaluate_arm`): sampled pass@k with thought and truncation
rates, and optionally decision-greedy pass@1 under ``decision_greedy_``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from ra3lab.errors import check
from ra3lab.evaluation import EvalConfig, SandboxPool, evaluate
from ra3lab.evaluation.solve import Evaluation
from ra3lab.lm import LineCodec, build_model, load_model
from ra3lab.lm.generate import Generator
from ra3lab.log import say
from ra3lab.ra3 import em
from ra3lab.ra3.arms import BASE, Arm
from ra3lab.ra3.estep import Corpus, EStepConfig
from ra3lab.runtime import place

REMAINDER = "random"     # the arm trained last, matched to an RA3 arm's thought counts
NAMED = ("name", "dtype")    # model keys that name a trained model (ra3_corpus), not the tiny model's shape


def validate_method(config: DictConfig) -> None:
    """The RA3 and mid-training keys every such study shares."""
    check(all(c >= 0 for c in config.cs), "cs", list(config.cs), "penalties per thought must be >= 0")
    estep = EStepConfig.of(config.estep)
    check(REMAINDER not in config.references or len(config.cs) > 0, "references", list(config.references),
          "random placement is matched to the thoughts of the RA3 arm of the first c: give at least one c in cs")
    eval_config(config, estep.max_thought_tokens)
    check(config.midtrain.rounds >= 1, "midtrain.rounds", config.midtrain.rounds, "need at least 1 EM round")
    check(config.midtrain.steps_per_round >= 1, "midtrain.steps_per_round", config.midtrain.steps_per_round,
          "need at least 1 M-step")


def eval_config(config: DictConfig, thought_tokens: int, decoding: str | None = None) -> EvalConfig:
    """The study's ``eval`` block as an EvalConfig; thought_tokens: L_z of the budget (the E-step's
    max_thought_tokens)."""
    spec = config.eval
    return EvalConfig(decoding=decoding or spec.decoding, n=spec.n, temperature=spec.temperature, k=tuple(spec.k),
                      max_new_tokens=spec.max_new_tokens, thought_tokens=thought_tokens, seed=int(config.seed))


def evaluate_arm(model, tokenizer, tasks: list[dict], pool: SandboxPool, config: DictConfig, thought_tokens: int,
                 suffix: str = "", describe: Callable[[Evaluation], dict] | None = None,
                 generator: Generator | None = None) -> dict:
    """The arm's pass@k and how it thought and truncated (:meth:`Evaluation.summary` keys, ``<key><suffix>``),
    with eval.decoding (through ``generator``, default HF generate), and what ``describe`` reads off its samples;
    then, when eval.decision_greedy, the same pass@k under ``decision_greedy_<key><suffix>``."""
    evaluation = evaluate(model, tokenizer, tasks, pool, eval_config(config, thought_tokens), generator=generator)
    described = describe(evaluation) if describe else {}
    result = {f"{key}{suffix}": value for key, value in {**evaluation.summary(), **described}.items()}
    if config.eval.decision_greedy:
        greedy = evaluate(model, tokenizer, tasks, pool,
                          eval_config(config, thought_tokens, "decision_greedy")).summary()
        result.update({f"decision_greedy_{key}{suffix}": value for key, value in greedy.items()})
    return result


def arms_of(config: DictConfig) -> list[Arm]:
    """base, the references, RA3 per c; ``random`` last (it needs RA3's thought counts)."""
    first = [Arm.parse(name, "references") for name in config.references if name != REMAINDER]
    last = [Arm.parse(REMAINDER)] if REMAINDER in config.references else []
    return [BASE, *first, *(Arm.ra3(c) for c in config.cs), *last]


def ra3_placements(config: DictConfig, run_dir: Path) -> list[list[int]]:
    """Per training snippet, the lines before which the RA3 arm of the first c put a thought in its last round;
    run_dir: the run that trained that arm."""
    _, rounds = em.last_round(Arm.ra3(config.cs[0]).folder(run_dir))
    return rounds[-1]["placements"]


def pretrained_base(config: DictConfig, tokenizer, codec: LineCodec, programs: list[list[str]], folder: Path,
                    track: em.Track | None = None):
    """The tiny base model pre-trained on ``programs``; loaded from ``folder`` when saved before. ``track``, where
    given, gets the loss as ``pretrain/loss`` every 10 steps."""
    if (folder / "metrics.json").exists():
        return place(load_model(folder), config.get("runtime"), training=True)
    shape = {key: value for key, value in config.model.items() if key not in NAMED}
    model = place(build_model(tokenizer, **shape, seed=config.seed), config.get("runtime"), training=True)
    say("mid-training", f"pre-training the base model ({model.num_parameters() / 1e6:.2f}M parameters) for "
                        f"{config.pretrain.steps} steps")

    def log(step: int, loss: float) -> None:
        if step % 100 == 0:
            say("mid-training", f"pre-training step {step}: loss {loss:.3f}")
        if track is not None:
            track(step, {"pretrain/loss": loss})

    losses = em.train_on(model, codec, programs, config.pretrain.steps, config.pretrain.batch_size, config.pretrain.lr,
                         config.seed, eos=config.midtrain.eos, log=log, runtime=config.get("runtime"))
    em.save_round(model, tokenizer, folder, {"loss": losses[-1]})
    return model


def arm_model(arm: Arm, base, tokenizer, codec: LineCodec, train: Corpus, references: dict[str, list[list[str]]],
              config: DictConfig, estep: EStepConfig | None, run_dir: Path,
              track: em.Track | None = None) -> tuple[object, dict]:
    """(the arm's mid-trained model, its training metrics); references train on ``references[arm.name]``, the
    models are saved in the arm's folder of ``run_dir``; estep: for RA3 and infuse0 (None for the others);
    ``track``: the training curves as they are produced (:mod:`ra3lab.ra3.em`)."""
    seed = int(config.seed)
    if arm.kind == "base":
        return base, {}
    if arm.kind == "reference":
        return em.ntp(base, tokenizer, codec, references[arm.name], config, arm.folder(run_dir), seed, track), {}
    assert estep is not None, f"the {arm} arm runs E-steps: give its EStepConfig"
    if arm.kind == "infuse0":                   # q is pi: no E-step and no penalty
        estep = replace(estep, method="rl", steps=0)
    model, rounds = em.ra3(base, tokenizer, codec, train, config, estep, arm.c or 0.0, arm.folder(run_dir), seed,
                           lambda message: say("mid-training", f"{arm} {message}"), track)
    curve = rounds[-1]["estep"]
    return model, {"estep_reward_first": curve[0]["reward"] if curve else None,
                   "estep_reward_last": curve[-1]["reward"] if curve else None,
                   **{f"infused_{key}": value for key, value in rounds[-1]["infused"].items()}}


def log_estep_curves(run, folders: dict[Arm, Path]) -> None:
    """Append every RA3 arm's E-step curves to metrics.jsonl: one line per E-step step, in the
    namespace ``estep/reward``, ``estep/loss``, ``rationale/rate``, ``rationale/length`` and, on
    CodeWorld, ``rationale/boundary_precision|recall|f1``; ``arm`` and ``round`` say where from.
    folders: each arm's model folder (:meth:`Arm.folder` of the run that trained it)."""
    step = 0
    for arm, folder in folders.items():
        if arm.kind != "ra3":                   # infuse0 has no E-step curve
            continue
        _, rounds = em.last_round(folder)
        for metrics in rounds:
            for point in metrics["estep"]:
                run.log(step, arm=arm.name, round=metrics["round"], **em.estep_tags(point))
                step += 1
