"""The CodeWorld pipeline as stages, each an ordinary run (see :mod:`ra3lab.stages`).

    pretrain  the tokenizer and the tiny base model (experiments/pretrain.yaml)
    midtrain  one arm from that base: base (none), ntp, oracle, random, infuse0 or ra3_c<c>
    evaluate  one arm's held-out code likelihood and pass@k
    rlvr      GRPO from one arm's model with one seed

Every stage experiment composes ``codeworld_ra3``'s keys (one flat config: ``model.hidden``, ``estep.*``,
``arm``, ``rlvr.seed`` ... as written in a sweep), and each stage keeps only the keys its results depend on,
so that, e.g., the NTP arm is trained once for every penalty c and thought length L_z of a sweep.
``codeworld_ra3`` and ``codeworld_rlvr`` are compositions of these stages.
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ra3lab.codeworld import Program
from ra3lab.ra3.estep import Corpus
from ra3lab.stages import upstream_summary

HEADER = 2      # def line + docstring: context, no thought before them
DATA = {"pretrain": ("train", 1, None), "midtrain": ("train", 2, 0.0), "heldout": ("heldout", 3, 0.0)}


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


def programs(config: DictConfig, part: str) -> list[Program]:
    """CodeWorld's ``data.<part>`` programs (pretrain: with the world's comments; midtrain and heldout: none),
    drawn with the pipeline's seed: the same programs in every stage."""
    split, offset, comments = DATA[part]
    world = instantiate(config.env)
    return world.sample(config.data[part], split, seed=int(config.seed) * 10 + offset, comment_fraction=comments)


def corpus(programs: list[Program]) -> Corpus:
    """Comment-free programs as snippets: thoughts may go before body lines; truth = skill starts."""
    snippets = [program.lines(comments=False) for program in programs]
    decisions = [[t >= HEADER for t in range(len(s))] for s in snippets]
    truth = [{HEADER + b for b in program.boundaries} for program in programs]
    return Corpus(snippets, decisions, truth)
