"""Stage ``pretrain``: the base model every arm starts from, saved in the run. A tiny model: the tokenizer trained
on the source's programs (:mod:`ra3lab.studies.stages.sources`) and the model pre-trained on them (its loss curve
goes to TensorBoard under ``tensorboard/pretrain``, :mod:`ra3lab.tracking`). A named model (``model.name``, a
hub id or a directory): its weights and tokenizer as loaded in ``model.dtype``, so that every downstream run reads
one pinned copy."""

from __future__ import annotations

import transformers
from omegaconf import DictConfig

from ra3lab.execute import runs_root
from ra3lab.lm import LineCodec, check_compatible, load_model, load_tokenizer, train_tokenizer
from ra3lab.studies.midtraining import pretrained_base
from ra3lab.studies.stages.sources import source_of
from ra3lab.tracking import event_dir, scalars

KEYS = ["tokenizer", "model", "pretrain", "midtrain.eos", "tracking"]
MODEL = "model"     # the folder of the run holding the base model and its tokenizer


def keys(config: DictConfig) -> list[str]:
    return [*source_of(config).keys("pretrain"), *KEYS]


def validate(config: DictConfig) -> None:
    source_of(config).validate()


def named(config: DictConfig, folder):
    """The model ``model.name`` in ``model.dtype`` with its tokenizer, checked to match and saved in ``folder``."""
    model, tokenizer = load_model(config.model.name, dtype=config.model.dtype), load_tokenizer(config.model.name)
    check_compatible(model, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    folder, source = run.path / MODEL, source_of(config)
    if config.model.get("name") is not None:
        model = named(config, folder)
    else:
        tokenizer = train_tokenizer(source.tokenizer_lines(), vocab_size=config.tokenizer.vocab_size,
                                    cache_dir=runs_root() / ".cache" / "tokenizers")
        with scalars(event_dir(config, run.path, "pretrain")) as track:
            model = pretrained_base(config, tokenizer, LineCodec(tokenizer), source.pretraining(), folder, track)
    return {"model": str(folder.relative_to(runs_root())), "parameters": model.num_parameters()}
