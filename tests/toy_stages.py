"""Two small real stages for the DAG tests: ``base`` (counts its runs in ``<runs>/base_runs``, sleeps, fails
while ``<runs>/base_fails`` exists) and ``top`` (consumes base). ``kind`` says which; ``label`` is a key only
``top`` depends on, so that many ``top`` runs share one ``base``."""

from __future__ import annotations

import time

from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import check
from ra3lab.execute import runs_root
from ra3lab.stages import upstream_summary


def keys(config: DictConfig) -> list[str]:
    return ["kind", "value", "sleep_s"] + (["label"] if config.kind == "top" else [])


def upstream(config: DictConfig) -> dict:
    if config.kind == "base":
        return {}
    return {"base": ("toy_base", OmegaConf.merge(config, {"kind": "base"}))}


def validate(config: DictConfig) -> None:
    check(config.kind in ("base", "top"), "kind", config.kind, "base or top")


def run(config: DictConfig, run) -> dict:
    if config.kind == "top":
        return {"result": upstream_summary(config, "base")["doubled"] + len(config.label)}
    with open(runs_root() / "base_runs", "a") as counter:
        counter.write(f"{run.path.name}\n")
    check((runs_root() / "base_fails").exists() is False, "base_fails", str(runs_root() / "base_fails"),
          "delete it to let the base stage succeed")
    time.sleep(config.sleep_s)
    return {"doubled": 2 * config.value}
