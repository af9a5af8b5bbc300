"""Mid-training arms shared by the CodeWorld and the real-corpus studies.

An arm is a name: ``base`` (no mid-training), a reference trained by next-token prediction on its
own rendering of the corpus (``ntp``: the plain code; ``oracle`` / ``random``: teacher comments),
``infuse0`` (RA3's rounds with no E-step: q is pi itself, what the E-step adds is the difference), or
``ra3_c<c>`` (RA3's EM rounds with penalty c). ``random`` comes last: it places as many comments per
snippet as the RA3 arm of the first c infused. Each trained arm's model is saved under
``checkpoints/<arm>/`` (RA3 and infuse0: one folder per round), which makes a run resumable inside an
arm and gives post-training its starting points.

Every arm is evaluated the same way (:func:`evaluate_arm`): sampled pass@k with thought and truncation
rates, and optionally decision-greedy pass@1 under ``decision_greedy_``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import check, check_choice
from ra3lab.evaluation import EvalConfig, SandboxPool, evaluate
from ra3lab.lm import LineCodec, build_model, load_model
from ra3lab.log import say
from ra3lab.ra3 import em
from ra3lab.ra3.estep import Corpus
from ra3lab.ra3.reward import BASELINES, KINDS, RETURNS

REMAINDER = "random"     # the arm trained last, matched to an RA3 arm's thought counts


def validate_method(config: DictConfig) -> None:
    """The RA3 and mid-training keys every such study shares."""
    check(all(c >= 0 for c in config.cs), "cs", list(config.cs), "penalties per thought must be >= 0")
    check(config.estep.group_size >= 2, "estep.group_size", config.estep.group_size,
          "G >= 2: the group baseline needs at least two rollouts per snippet")
    check(config.estep.max_thought_tokens >= 1, "estep.max_thought_tokens", config.estep.max_thought_tokens,
          "L_z >= 1 token per thought")
    check(config.estep.temperature > 0, "estep.temperature", config.estep.temperature, "must be > 0")
    check_choice("estep.method", config.estep.method, ("rl", "resample"))
    check_choice("estep.reward", config.estep.reward, KINDS)
    check_choice("estep.baseline", config.estep.baseline, BASELINES)
    check_choice("estep.returns", config.estep.returns, RETURNS)
    check(isinstance(config.estep.lookahead, int) and config.estep.lookahead >= 0, "estep.lookahead",
          config.estep.lookahead, "must be an integer >= 0 (0: prior-style q; k: q sees the next k code lines)")
    for key in ("kl_coef", "entropy_coef"):
        check(config.estep[key] >= 0, f"estep.{key}", config.estep[key], "must be >= 0")
    check(0 <= config.estep.ema_decay < 1, "estep.ema_decay", config.estep.ema_decay, "must lie in [0, 1)")
    check(config.estep.entropy_coef == 0 or config.estep.method == "rl", "estep.entropy_coef",
          config.estep.entropy_coef, "shapes the RL E-step's reward: use it with estep.method=rl")
    check(REMAINDER not in config.references or len(config.cs) > 0, "references", list(config.references),
          "random placement is matched to the thoughts of the RA3 arm of the first c: give at least one c in cs")
    eval_config(config)
    check(config.midtrain.rounds >= 1, "midtrain.rounds", config.midtrain.rounds, "need at least 1 EM round")
    check(config.midtrain.steps_per_round >= 1, "midtrain.steps_per_round", config.midtrain.steps_per_round,
          "need at least 1 M-step")


def eval_config(config: DictConfig, decoding: str | None = None) -> EvalConfig:
    """The study's ``eval`` block as an EvalConfig (L_z of the budget: estep.max_thought_tokens)."""
    spec = config.eval
    return EvalConfig(decoding=decoding or spec.decoding, n=spec.n, temperature=spec.temperature, k=tuple(spec.k),
                      max_new_tokens=spec.max_new_tokens, thought_tokens=config.estep.max_thought_tokens,
                      seed=int(config.seed))


def evaluate_arm(model, tokenizer, tasks: list[dict], pool: SandboxPool, config: DictConfig, suffix: str = "") -> dict:
    """The arm's pass@k and how it thought and truncated (:meth:`Evaluation.summary` keys, ``<key><suffix>``),
    with eval.decoding; then, when eval.decision_greedy, the same under ``decision_greedy_<key><suffix>``."""
    result = {f"{key}{suffix}": value for key, value in
              evaluate(model, tokenizer, tasks, pool, eval_config(config)).summary().items()}
    if config.eval.decision_greedy:
        greedy = evaluate(model, tokenizer, tasks, pool, eval_config(config, "decision_greedy")).summary()
        result.update({f"decision_greedy_{key}{suffix}": value for key, value in greedy.items()})
    return result


def arm_names(config: DictConfig) -> list[str]:
    """base, the references, RA3 per c; ``random`` last (it needs RA3's thought counts)."""
    first = [arm for arm in config.references if arm != REMAINDER]
    return ["base", *first, *(f"ra3_c{c:g}" for c in config.cs), *([REMAINDER] if REMAINDER in config.references
                                                                    else [])]


def ra3_placements(config: DictConfig, checkpoints: Path) -> list[list[int]]:
    """Per training snippet, the lines before which the RA3 arm of the first c put a thought in its last round."""
    _, rounds = em.last_round(checkpoints / f"ra3_c{config.cs[0]:g}")
    return rounds[-1]["placements"]


def pretrained_base(config: DictConfig, tokenizer, codec: LineCodec, programs: list[list[str]], folder: Path):
    """The tiny base model pre-trained on ``programs``; loaded from ``folder`` when saved before."""
    if (folder / "metrics.json").exists():
        return load_model(folder)
    model = build_model(tokenizer, **config.model, seed=config.seed)
    say("mid-training", f"pre-training the base model ({model.num_parameters() / 1e6:.2f}M parameters) for "
                        f"{config.pretrain.steps} steps")
    losses = em.train_on(model, codec, programs, config.pretrain.steps, config.pretrain.batch_size, config.pretrain.lr,
                         config.seed, eos=config.midtrain.eos,
                         log=lambda step, loss: say("mid-training", f"pre-training step {step}: loss {loss:.3f}")
                         if step % 100 == 0 else None)
    em.save_round(model, tokenizer, folder, {"loss": losses[-1]})
    return model


def arm_model(arm: str, base, tokenizer, codec: LineCodec, train: Corpus, references: dict[str, list[list[str]]],
              config: DictConfig, checkpoints: Path) -> tuple[object, dict]:
    """(the arm's mid-trained model, its training metrics)."""
    seed = int(config.seed)
    if arm == "base":
        return base, {}
    if arm in references:
        return em.ntp(base, tokenizer, codec, references[arm], config, checkpoints / arm, seed), {}
    if arm == "infuse0":
        c, config = 0.0, OmegaConf.merge(config, {"estep": {"method": "rl", "steps": 0}})
    else:
        c = float(arm.removeprefix("ra3_c"))
    model, rounds = em.ra3(base, tokenizer, codec, train, config, c, checkpoints / arm, seed,
                           lambda message: say("mid-training", f"{arm} {message}"))
    curve = rounds[-1]["estep"]
    return model, {"estep_reward_first": curve[0]["reward"] if curve else None,
                   "estep_reward_last": curve[-1]["reward"] if curve else None,
                   **{f"infused_{key}": value for key, value in rounds[-1]["infused"].items()}}


def log_estep_curves(run, arms: list[str], checkpoints: Path) -> None:
    """Append every RA3 arm's E-step curves to metrics.jsonl: one line per E-step step, in the
    namespace ``estep/reward``, ``estep/loss``, ``rationale/rate``, ``rationale/length`` and, on
    CodeWorld, ``rationale/boundary_precision|recall|f1``; ``arm`` and ``round`` say where from."""
    step = 0
    for arm in arms:
        if not arm.startswith("ra3_c"):         # infuse0 has no E-step curve
            continue
        _, rounds = em.last_round(checkpoints / arm)
        for metrics in rounds:
            for point in metrics["estep"]:
                run.log(step, arm=arm, round=metrics["round"],
                        **{f"{'estep' if key in ('reward', 'loss') else 'rationale'}/{key}": value
                           for key, value in point.items()})
                step += 1
