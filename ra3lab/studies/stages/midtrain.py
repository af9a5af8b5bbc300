"""Stage ``midtrain``: one mid-training arm (``arm``) from the ``pretrain`` stage's base model.

``base`` trains nothing (its model is the base); ``ntp`` and ``oracle`` train by next-token prediction on the
plain and on the oracle-commented corpus; ``infuse0`` and ``ra3_c<c>`` run RA3's EM rounds; ``random`` places
as many intent comments per program as the RA3 arm of the first c in ``cs`` (an upstream run) wrote, at random
lines. ``oracle`` and ``random`` need CodeWorld's intents; the other arms train on any source
(:mod:`ra3lab.studies.stages.sources`). Which keys an arm depends on follows from what it trains on: only RA3
and infuse0 read ``estep``. A trained arm's curves go to TensorBoard under ``tensorboard/<arm>``
(:mod:`ra3lab.tracking`).
"""

from __future__ import annotations

import transformers
from omegaconf import DictConfig

from ra3lab.errors import check
from ra3lab.execute import runs_root
from ra3lab.lm import LineCodec, load_model, load_tokenizer
from ra3lab.log import say
from ra3lab.ra3.arms import Arm
from ra3lab.ra3.estep import EStepConfig
from ra3lab.runtime import place
from ra3lab.stages import upstream_dir
from ra3lab.studies import codeworld_ra3
from ra3lab.studies.midtraining import arm_model, ra3_placements
from ra3lab.studies.stages import as_stage, model_path
from ra3lab.studies.stages.sources import CodeWorldSource, offers, reference_choices, source_of, teacher_share
from ra3lab.tracking import event_dir, scalars

TRAINING = ["midtrain", "tracking"]   # what every trained arm reads besides its base and its source's corpus


def check_arm(name: str, field: str = "arm") -> Arm:
    """The arm called ``name``; ConfigError naming ``field`` for a name that is no arm of this stage."""
    arm = Arm.parse(str(name), field)
    named = arm.name in ("ntp", "oracle", "random", "dsl") or teacher_share(arm.name) is not None
    check(arm.kind != "reference" or named, field, arm.name,
          "choose base, ntp, oracle, random, dsl, teacher_s<share>, infuse0 or ra3_c<c> (e.g. ra3_c0.05)")
    return arm


def arm_of(config: DictConfig) -> Arm:
    return check_arm(config.arm)


def keys(config: DictConfig) -> list[str]:
    arm = arm_of(config)
    if arm.kind == "base":
        return ["arm"]
    return ["arm", *source_of(config).keys("midtrain"), *TRAINING, *(["estep"] if arm.em_rounds else []),
            *(["cs"] if arm.name == "random" else [])]


def upstream(config: DictConfig) -> dict:
    """The base model, and for ``random`` the RA3 arm of the first c whose thought counts it matches."""
    found = {"base": ("pretrain", as_stage(config, "pretrain"))}
    if arm_of(config).name == "random":
        found["placement"] = ("midtrain", as_stage(config, "midtrain", arm=Arm.ra3(config.cs[0]).name))
    return found


def validate(config: DictConfig) -> None:
    arm, source = arm_of(config), source_of(config)
    check(arm.kind != "reference" or offers(source, arm.name), "arm", arm.name,
          f"this corpus has no {arm.name} rendering: choose one of {reference_choices(source)}, base, infuse0 or "
          "ra3_c<c>")
    source.validate()


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    arm, base_dir = arm_of(config), model_path(config, "base")
    if arm.kind == "base":
        return {"arm": arm.name, "model": str(base_dir.relative_to(runs_root())), "training": {}}
    base, tokenizer = place(load_model(base_dir), config.get("runtime"), training=True), load_tokenizer(base_dir)
    source = source_of(config)
    references = source.references()
    if arm.name == "random":
        assert isinstance(source, CodeWorldSource), "validate() allows random on CodeWorld only"
        midtrain = source.programs("midtrain")
        counts = [len(lines) for lines in ra3_placements(config, upstream_dir(config, "placement"))]
        chosen = codeworld_ra3.matched_placements(midtrain, counts, int(config.seed))
        references["random"] = [codeworld_ra3.random_comments(p, lines) for p, lines in zip(midtrain, chosen)]
    estep = EStepConfig.of(config.estep) if arm.em_rounds else None
    say("midtrain", f"arm {arm}")
    with scalars(event_dir(config, run.path, arm.name)) as track:
        _, training = arm_model(arm, base, tokenizer, LineCodec(tokenizer, base.config.vocab_size),
                                source.midtraining(), references, config, estep, run.path, track)
    model = arm.model_dir(run.path, config.midtrain.rounds)
    return {"arm": arm.name, "model": str(model.relative_to(runs_root())), "training": training}
