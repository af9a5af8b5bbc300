"""The best trial of a study, written into the study's folder as ``<runs>/tune/<space>/best.yaml`` with
the ``ra3lab run`` command that reruns its config."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
import yaml

from ra3lab.runs import atomic_write, json_safe
from ra3lab.sweep.space import Space
from ra3lab.sweep.storage import shown, tune_dir


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's best trial; None when no trial completed."""
    try:
        return study.best_trial
    except ValueError:
        return None


def rerun_command(space: Space, params: dict) -> str:
    """``ra3lab run <experiment> [--quick] <fixed> <params>``, shell-quoted: it composes the config the
    trial with ``params`` ran (less its ``tune.*`` keys)."""
    quick = ["--quick"] if space.quick else []
    return shlex.join(["ra3lab", "run", space.experiment, *quick, *space.overrides(params)])


def export_best(space: Space, trial: optuna.trial.FrozenTrial, url: str) -> tuple[Path, str]:
    """Write ``trial`` as ``<runs>/tune/<space>/best.yaml`` (its value, params, run directory and the
    overrides of its config); returns the file and the command that reruns the trial."""
    command = rerun_command(space, trial.params)
    record = {"study": space.name, "storage": shown(url), "trial": trial.number, "objective": space.objective_name(),
              "direction": space.direction, "value": trial.value, "params": trial.params,
              "run_dir": trial.user_attrs.get("run_dir"), "experiment": space.experiment, "quick": space.quick,
              "overrides": space.overrides(trial.params), "command": command}
    header = (f"# Best trial of sweeps/{space.name}_space.yaml: trial {trial.number}, {space.objective_name()} = "
              f"{trial.value:.6g} ({space.direction}).\n"
              f"# Rerun it: {command}\n")
    path = tune_dir(space.name) / "best.yaml"
    atomic_write(path, header + yaml.safe_dump(json_safe(record), sort_keys=False, width=120))
    return path, command
