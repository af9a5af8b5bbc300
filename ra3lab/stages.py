"""Stages: runs that consume other runs, so that work many configs share is computed once.

A study is a stage when its module defines ``upstream(config) -> {role: (experiment, config)}``: the runs it
consumes, each given by a config of that run's experiment. It may also define ``keys(config)``: the dotted
keys its results depend on. Its run then stores only those keys (and those of :data:`ALWAYS`) plus
``upstream: {role: "<experiment>/<run id>"}``, and its run id is the hash of that: two configs that differ
only in keys a stage ignores share its run, and a changed upstream changes every id downstream. Lineage is
recorded as run ids relative to the runs root, never as paths.

    root = plan("rlvr", config)          # the DAG: root.upstream["model"].upstream["base"] ...
    for node in order([root]): ...       # every node once, upstream first

A run directory is computed under a lock (:func:`lock`): a second process that needs the same run waits
for the first and then reuses its result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import ConfigError, check
from ra3lab.log import say
from ra3lab.runs import Run, run_id

ALWAYS = ("study", "seed", "threads", "runtime", "generation")   # every stage keeps its code, seed, threads, devices


@dataclass(frozen=True)
class Node:
    """One run of a DAG: its experiment, its stored config (with ``upstream`` ids) and the nodes it consumes."""

    experiment: str
    config: DictConfig
    upstream: dict[str, Node] = field(default_factory=dict)

    @cached_property
    def run_id(self) -> str:
        return run_id(self.config)

    @property
    def id(self) -> str:
        """``<experiment>/<run id>``: the run's path relative to the runs root."""
        return f"{self.experiment}/{self.run_id}"

    @property
    def path(self) -> Path:
        from ra3lab.execute import runs_root

        return runs_root() / self.id

    def run(self) -> Run:
        return Run(self.path, self.config)


def project(config: DictConfig, keys: list[str]) -> DictConfig:
    """The part of ``config`` under ``keys`` (dotted paths) and :data:`ALWAYS`, as a new config."""
    kept = OmegaConf.create()
    for key in [*ALWAYS, *keys]:
        value = OmegaConf.select(config, key, throw_on_missing=True, default=KeyError)
        if value is KeyError:
            check(key in ALWAYS, key, None, f"a stage of {config.study} depends on {key}, which the config lacks")
            continue
        OmegaConf.update(kept, key, value, merge=False, force_add=True)
    return kept


def _fingerprint(experiment: str, config: DictConfig) -> str:
    text = json.dumps([experiment, OmegaConf.to_container(config, resolve=True)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def plan(experiment: str, config: DictConfig, validate: bool = True, _chain: tuple[tuple[str, str], ...] = ()) -> Node:
    """The DAG of runs that ``experiment`` under ``config`` needs: each stage's config validated by its study
    (ConfigError before any work; ``validate=False`` only derives the ids), projected to its keys and given
    its upstream ids. A cycle is a ConfigError."""
    from ra3lab.execute import study_module

    module = study_module(config)
    here = (experiment, _fingerprint(experiment, config))
    seen = [name for name, _ in _chain]
    if here in _chain:
        raise ConfigError("upstream", experiment, "stages form a cycle: " + " -> ".join([*seen, experiment])
                          + "; a stage may not consume itself")
    if validate:
        module.validate(config)
        if "tracking" in config:
            from ra3lab.tracking import check_tracking

            check_tracking(config)
        if "runtime" in config:
            from ra3lab.runtime import validate as check_runtime

            check_runtime(config.runtime)
    consumed = module.upstream(config) if hasattr(module, "upstream") else {}
    upstream = {role: plan(name, stage_config, validate, (*_chain, here))
                for role, (name, stage_config) in consumed.items()}
    own = project(config, list(module.keys(config))) if hasattr(module, "keys") else OmegaConf.create(
        OmegaConf.to_container(config, resolve=True))
    if upstream:
        OmegaConf.update(own, "upstream", {role: node.id for role, node in upstream.items()}, force_add=True)
    assert isinstance(own, DictConfig), "a config is a mapping"
    return Node(experiment, own, upstream)


def order(roots: list[Node]) -> list[Node]:
    """Every node of the DAGs under ``roots`` once, each after the nodes it consumes."""
    seen: dict[str, Node] = {}

    def visit(node: Node) -> None:
        if node.id in seen:
            return
        for upstream in node.upstream.values():
            visit(upstream)
        seen[node.id] = node

    for root in roots:
        visit(root)
    return list(seen.values())


def levels(nodes: list[Node]) -> dict[str, int]:
    """Each node's level: 0 for a node that consumes nothing, else one more than its highest upstream."""
    level: dict[str, int] = {}
    for node in order(nodes):
        level[node.id] = 1 + max((level[up.id] for up in node.upstream.values()), default=-1)
    return level


def upstream_dir(config: DictConfig, role: str) -> Path:
    """The run directory of the upstream ``role`` of a stage's stored config."""
    from ra3lab.execute import runs_root

    return runs_root() / str(config.upstream[role])


def upstream_summary(config: DictConfig, role: str) -> dict:
    """The summary of the upstream run ``role``; a ConfigError naming ``upstream.<role>`` when it is not done."""
    path = upstream_dir(config, role) / "summary.json"
    check(path.exists(), f"upstream.{role}", str(config.upstream[role]),
          "that run is not done (failed, or never run): run it first, e.g. with `ra3lab run` on this stage, "
          "which computes missing upstream runs")
    return json.loads(path.read_text())


def _mapping(config) -> DictConfig:
    """A loaded config.yaml, which is a mapping."""
    assert isinstance(config, DictConfig), "a run's config.yaml is a mapping"
    return config


def downstream(root: Path, run: str) -> list[str]:
    """Ids of the runs under the runs root ``root`` whose config names ``run`` (an id) as an upstream."""
    found = []
    for path in sorted(Path(root).glob("*/*/config.yaml")):
        upstream = (_mapping(OmegaConf.load(path)).get("upstream") or {}).values()
        if run in upstream:
            found.append(f"{path.parent.parent.name}/{path.parent.name}")
    return found


@contextmanager
def lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory ``path`` = <runs root>/<experiment>/<id> (flock on
    <runs root>/.locks/<experiment>.<id>, which also works on NFSv4 shared filesystems); says so and waits when
    another process holds it."""
    locks = path.parent.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{path.parent.name}.{path.name}", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("run", f"{path} is being computed by another process: waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def show(root: Path, run: str) -> dict:
    """One run under the runs root ``root`` (a directory or an id ``<experiment>/<run id>``): its state, its
    upstream runs by role and the runs that consume it, each with its state, and its provenance."""
    from ra3lab.sweep.status import run_state

    path = Path(run) if (Path(run) / "config.yaml").exists() else Path(root) / run
    check((path / "config.yaml").exists(), "run", run,
          f"not a run: give a run directory or <experiment>/<run id> under {root} (`ra3lab list` names experiments)")
    run_id_ = f"{path.parent.name}/{path.name}"
    state = run_state(path)
    upstream = {role: (str(up), run_state(Path(root) / str(up))["state"])
                for role, up in (_mapping(OmegaConf.load(path / "config.yaml")).get("upstream") or {}).items()}
    provenance = path / "provenance.json"
    return {"run": run_id_, "run_dir": str(path), "state": state["state"], "error": state["error"],
            "upstream": upstream,
            "downstream": {found: run_state(Path(root) / found)["state"] for found in downstream(root, run_id_)},
            "provenance": json.loads(provenance.read_text()) if provenance.exists() else None}
