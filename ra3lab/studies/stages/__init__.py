"""The RA3 pipeline as stages, each an ordinary run (see :mod:`ra3lab.stages`).

    pretrain  the tokenizer and the tiny base model, or a named model (experiments/pretrain.yaml)
    midtrain  one arm from that base: base (none), ntp, oracle, random, infuse0 or ra3_c<c>
    evaluate  one arm's held-out code likelihood and pass@k
    rlvr      GRPO from one arm's model with one seed

Every stage experiment composes ``codeworld_ra3``'s keys (one flat config: ``model.hidden``, ``estep.*``,
``arm``, ``rlvr.seed`` ... as written in a sweep), and each stage keeps only the keys its results depend on,
so that, e.g., the NTP arm is trained once for every penalty c and thought length L_z of a sweep.
``codeworld_ra3``, ``codeworld_rlvr`` and ``ra3_corpus`` are compositions of these stages; where their code comes
from (CodeWorld or a corpus of files) is the config's source (:mod:`ra3lab.studies.stages.sources`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ra3lab.stages import upstream_summary


def as_stage(config: DictConfig, stage: str, **changes) -> DictConfig:
    """``config`` (any stage's, or codeworld_ra3's) as the config of ``stage`` with ``changes`` (dotted keys)."""
    staged = OmegaConf.merge(config, {"study": f"ra3lab.studies.stages.{stage}"})
    assert isinstance(staged, DictConfig), "a config is a mapping"
    for key, value in changes.items():
        OmegaConf.update(staged, key, value, merge=False, force_add=True)
    return staged


def model_path(config: DictConfig, role: str) -> Path:
    """The save_pretrained directory of the model the upstream run ``role`` produced (its summary's ``model``,
    relative to the runs root)."""
    from ra3lab.execute import runs_root

    return runs_root() / upstream_summary(config, role)["model"]


def arm_stages(config: DictConfig) -> dict:
    """Per arm of the config (:func:`~ra3lab.studies.midtraining.arms_of`), its ``midtrain`` run (role
    ``train_<arm>``) and its ``evaluate`` run (``eval_<arm>``): the upstream of a study that compares arms."""
    from ra3lab.studies.midtraining import arms_of

    found = {}
    for arm in arms_of(config):
        found[f"train_{arm}"] = ("midtrain", as_stage(config, "midtrain", arm=arm.name))
        found[f"eval_{arm}"] = ("evaluate", as_stage(config, "evaluate", arm=arm.name))
    return found


def arm_rows(config: DictConfig) -> list[dict]:
    """Per arm, its name with its training metrics and its evaluation (from the runs of :func:`arm_stages`)."""
    from ra3lab.studies.midtraining import arms_of

    return [{"arm": arm.name, **upstream_summary(config, f"train_{arm}")["training"],
             **upstream_summary(config, f"eval_{arm}")["evaluation"]} for arm in arms_of(config)]
