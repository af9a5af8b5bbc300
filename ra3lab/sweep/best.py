"""The best trial of a study, exported as a ready experiment file ``experiments/<space>_best.yaml``."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from omegaconf import OmegaConf

from ra3lab.config import compose_experiment, project_root
from ra3lab.runs import atomic_write
from ra3lab.sweep.space import Space
from ra3lab.sweep.storage import shown

MARKER = "Written by `ra3lab tune"   # in the header of an exported best experiment: safe to overwrite


class _Dumper(yaml.SafeDumper):
    """YAML as the experiment files write it: nested lists indented, lists of plain values inline."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=all(not isinstance(item, (dict, list)) for item in data)))


def best_path(space: str) -> Path:
    return project_root() / "experiments" / f"{space}_best.yaml"


def _env_defaults(defaults) -> dict:
    """The env group file an experiment's defaults list pulls (``- /envs@env: chain``), as a dict."""
    for entry in defaults or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.lstrip("/").startswith("envs@env") or key == "env":
                    path = project_root() / "envs" / f"{value}.yaml"
                    return yaml.safe_load(path.read_text()) if path.exists() else {}
    return {}


def export_best(space: Space, study: optuna.Study, url: str) -> Path | None:
    """Write the best trial as ``experiments/<space>_best.yaml`` and check that it composes to the
    trial's config; None when no trial completed."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    config = space.compose(best.params)
    body = OmegaConf.to_container(config, resolve=True)
    base = yaml.safe_load((project_root() / "experiments" / f"{space.experiment}.yaml").read_text())
    env_file = _env_defaults(base.get("defaults"))
    if env_file and isinstance(body.get("env"), dict):
        body["env"] = {key: value for key, value in body["env"].items() if env_file.get(key, object()) != value}
        if not body["env"]:
            del body["env"]
    body.pop("quick", None)
    if not space.quick and base.get("quick"):
        tuned = {param.key for param in space.params} | {o.split("=", 1)[0].lstrip("+~") for o in space.fixed}
        rest = {key: value for key, value in base["quick"].items() if key not in tuned}
        if rest:
            body["quick"] = rest
    params = ", ".join(f"{name}={value:.6g}" if isinstance(value, float) else f"{name}={value}"
                       for name, value in best.params.items())
    header = (f"# @package _global_\n"
              f"# Best trial of sweeps/{space.name}_space.yaml: trial {best.number}, {space.objective_name()} = "
              f"{best.value:.6g} ({space.direction}) at {params}.\n"
              f"# {MARKER} {space.name}` (study '{space.name}' in {shown(url)}), from {space.experiment}"
              f"{' at quick scale (its quick: values are applied here)' if space.quick else ''}.\n"
              f"# Rerun it: ra3lab run {space.name}_best\n")
    text = header + yaml.dump({"defaults": base.get("defaults", ["_self_"]), **body}, Dumper=_Dumper,
                              sort_keys=False, width=120)
    path = best_path(space.name)
    atomic_write(path, text)
    again = OmegaConf.to_container(compose_experiment(f"{space.name}_best"), resolve=True)
    expected = OmegaConf.to_container(config, resolve=True)
    again.pop("quick", None), expected.pop("quick", None)
    if again != expected:
        raise RuntimeError(f"{path} does not compose to the best trial's config: please report this")
    return path
