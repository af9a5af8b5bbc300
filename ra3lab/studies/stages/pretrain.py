"""Stage ``pretrain``: the tokenizer (trained on the pre-training and mid-training programs) and the tiny base
model pre-trained on CodeWorld programs with few intent comments; every arm starts from it. Its loss curve goes to
TensorBoard under ``tensorboard/pretrain`` (:mod:`ra3lab.tracking`)."""

from __future__ import annotations

import transformers
from omegaconf import DictConfig

from ra3lab.execute import runs_root
from ra3lab.lm import LineCodec, train_tokenizer
from ra3lab.studies import codeworld_ra3
from ra3lab.studies.midtraining import pretrained_base
from ra3lab.studies.stages import programs
from ra3lab.tracking import event_dir, scalars

KEYS = ["env", "data.pretrain", "data.midtrain", "tokenizer", "model", "pretrain", "midtrain.eos", "tracking"]
MODEL = "model"     # the folder of the run holding the base model and its tokenizer


def keys(config: DictConfig) -> list[str]:
    return KEYS


def validate(config: DictConfig) -> None:
    codeworld_ra3.validate_pipeline(config)


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    pretrain, midtrain = programs(config, "pretrain"), programs(config, "midtrain")
    tokenizer = train_tokenizer([line for p in pretrain + midtrain for line in p.lines()],
                                vocab_size=config.tokenizer.vocab_size, cache_dir=runs_root() / ".cache" / "tokenizers")
    with scalars(event_dir(config, run.path, "pretrain")) as track:
        model = pretrained_base(config, tokenizer, LineCodec(tokenizer), [p.lines() for p in pretrain],
                                run.path / MODEL, track)
    return {"model": str((run.path / MODEL).relative_to(runs_root())), "parameters": model.num_parameters()}
