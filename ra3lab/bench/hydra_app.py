"""The peer of ``ra3lab bench sweep``: the same experiment runs as a plain Hydra application,
launched with ``--multirun`` through hydra-submitit-launcher::

    python -m ra3lab.bench.hydra_app -cp <project root> -cn experiments/<name> --multirun \\
        hydra/launcher=submitit_slurm hydra.launcher.partition=debug seed=range(0,32)

Each job executes one run exactly as ``ra3lab run`` would (same config, same run directory format). With
``RA3LAB_RUNS_PER_JOB=1`` each job keeps its runs in its own output folder (``<job dir>/runs``), so that it
shares nothing with the others: a stage experiment then computes its whole chain in every job, as a study
that is one process does.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ra3lab.errors import ConfigError
from ra3lab.execute import execute


@hydra.main(config_path=None, config_name=None, version_base="1.3")
def main(config: DictConfig) -> dict:
    config_name = HydraConfig.get().job.config_name
    if os.environ.get("RA3LAB_RUNS_PER_JOB"):
        os.environ["RA3LAB_RUNS"] = str(Path(HydraConfig.get().runtime.output_dir) / "runs")
    if config_name is None:
        raise ConfigError("config_name", None, "name the experiment: -cn experiments/<name>")
    return execute(config_name.removeprefix("experiments/"), config)


if __name__ == "__main__":
    main()
