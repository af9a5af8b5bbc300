"""Benchmarks run by ``ra3lab bench <name>``: each maps to a ``run(**params) -> dict`` of JSON-able results."""

from __future__ import annotations

from ra3lab.bench import estep, mdp, pipeline, reward, scaling, sweep

BENCHMARKS = {"mdp": mdp.run, "sweep": sweep.run, "estep": estep.run, "reward": reward.run, "pipeline": pipeline.run,
              "scaling": scaling.run}
