"""Cluster profiles: the sbatch resources and the environment of a launch's array job.

A profile is ``slurm/profiles/<name>.yaml`` or a YAML file anywhere (given as a path). Every key (see
:data:`PROFILE_KEYS`) is optional except ``partition``; ``--slurm key=value`` overrides one key for
one launch. ``{checkout}`` in ``setup`` lines and ``python`` stands for the folder of this ra3lab
checkout (where its .venv lives). The profile maps onto the parameters of submitit's
``SlurmExecutor`` (:func:`executor_parameters`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ra3lab.errors import ConfigError, check
from ra3lab.files import PROFILES, Key, Kind, _check_key, load_file

PROFILE_KEYS = {
    "partition": Key((str,), "sbatch --partition: the queue the array job goes to", required=True),
    "account": Key((str,), "sbatch --account: the allocation charged (null: the user's default)"),
    "qos": Key((str,), "sbatch --qos: quality of service (null: the partition's default)"),
    "gpus_per_node": Key((int,), "sbatch --gpus-per-node: GPUs for each array task (null or 0: none)"),
    "cpus_per_task": Key((int,), "sbatch --cpus-per-task: CPU cores for each array task"),
    "mem_gb": Key((int, float), "sbatch --mem: memory for each array task, in GB"),
    "timeout_min": Key((int,), "sbatch --time: wall-clock limit of each array task, in minutes"),
    "array_parallelism": Key((int,), "sbatch --array=0-(N-1)%P: at most P tasks of the array run at once"),
    "signal_delay_s": Key((int,), "sbatch --signal=USR2@S: seconds before the time limit that a task is told to "
                                  "checkpoint and requeue (default 90; SLURM may send it up to 60 s earlier)"),
    "nodes": Key((int,), "the most nodes one run may span (its runtime.nodes: sbatch --nodes, one task per node); "
                         "default 1"),
    "setup": Key((list,), "shell lines run before the job (module load ..., source venv/bin/activate)", items=str),
    "python": Key((str,), "the command that starts Python on the compute node, after the setup lines "
                          "(default: python, as the setup's environment finds it)"),
    "additional": Key((dict,), "any other sbatch parameter, name: value (e.g. constraint: a100)"),
}
ALIASES = {"time": "timeout_min", "mem": "mem_gb"}   # sbatch's names accepted by --slurm
PROFILE_ENV = "RA3LAB_SLURM_PROFILE"   # the profile used when --profile is not given
DEFAULT_TIMEOUT_MIN = 60               # sbatch --time when a profile sets no timeout_min
DEFAULT_PYTHON = "python"              # the job's interpreter when a profile sets no python
CHECKOUT = Path(__file__).resolve().parents[2]   # what {checkout} stands for


@dataclass(frozen=True)
class ProfileFile(Kind):
    """A profile given as the path of a YAML file; its errors name it by that path."""

    file: Path = Path()

    def names(self) -> list[str]:
        return [str(self.file)]

    def path(self, name: str) -> Path:
        return self.file


def is_path(name: str) -> bool:
    """Whether ``--profile`` names a file (a path or a .yaml name) rather than a profile in slurm/profiles/."""
    return "/" in name or name.startswith("~") or name.endswith((".yaml", ".yml"))


def _read(name: str) -> dict:
    """The keys set in profile ``name`` (a name in slurm/profiles/ or an expanded path), checked."""
    if not is_path(name):
        return load_file(PROFILES, name, PROFILE_KEYS)
    check(Path(name).is_file(), "profile", name, "no such file: give the path of a profile YAML, or one of "
          f"{', '.join(PROFILES.names()) or '(none)'}")
    return load_file(ProfileFile(PROFILES.label, PROFILES.folder, file=Path(name)), name, PROFILE_KEYS)


def overridden(profile: dict, overrides: list[str] | tuple[str, ...]) -> tuple[dict, dict]:
    """``profile`` with each ``key=value`` of ``--slurm`` applied (value parsed as YAML, null unsets the key),
    and {key: the field errors about it name} for the keys overridden."""
    profile, fields = dict(profile), {}
    valid = f"the profile keys {', '.join(PROFILE_KEYS)} (or sbatch's {', '.join(ALIASES)}); Hydra overrides go " \
            "before --slurm"
    for item in overrides:
        given, sep, text = item.partition("=")
        key = ALIASES.get(given, given)
        check(bool(sep) and key in PROFILE_KEYS, f"slurm.{given}", item, f"pass key=value with key one of {valid}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"slurm.{given}", text, f"is not valid YAML: {str(error).splitlines()[0]}") from None
        _check_key(PROFILES, f"slurm.{given}", value, PROFILE_KEYS[key])
        if value is None:
            profile.pop(key, None)
        else:
            profile[key] = value
        fields[key] = f"slurm.{given}"
    return profile, fields


def _expand(profile: dict) -> dict:
    """``profile`` with {checkout} replaced in its setup lines and python command."""
    where = str(CHECKOUT)
    expanded = {**profile, "setup": [line.replace("{checkout}", where) for line in profile.get("setup", [])]}
    if "python" in profile:
        expanded["python"] = profile["python"].replace("{checkout}", where)
    return expanded


def load_profile(name: str | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The profile ``name`` (default: $RA3LAB_SLURM_PROFILE; a name in slurm/profiles/ or a YAML path) with the
    ``--slurm`` ``overrides``, validated; ConfigError naming the fix."""
    name = name or os.environ.get(PROFILE_ENV) or ""
    check(name != "", "profile", None, f"--launcher slurm needs --profile NAME or a path (or ${PROFILE_ENV}): "
          f"choose one of {', '.join(PROFILES.names()) or '(none: add slurm/profiles/<name>.yaml)'}")
    name = str(Path(name).expanduser()) if is_path(name) else name
    profile, fields = overridden(_read(name), overrides)

    def field(key: str) -> str:
        return fields.get(key, f"{name}.{key}")

    for key in ("cpus_per_task", "timeout_min", "array_parallelism", "nodes"):
        check(profile.get(key, 1) >= 1, field(key), profile.get(key), "must be >= 1")
    limit_s = 60 * profile.get("timeout_min", DEFAULT_TIMEOUT_MIN)
    check(1 <= profile.get("signal_delay_s", 1) < limit_s, field("signal_delay_s"), profile.get("signal_delay_s"),
          f"must be >= 1 and below the time limit ({limit_s} s), or every task is signalled as it starts")
    check(profile.get("mem_gb", 1) > 0, field("mem_gb"), profile.get("mem_gb"), "must be > 0 (GB)")
    return {"name": name, **_expand(profile)}


def python_command(profile: dict) -> str:
    """The command the job script starts Python with (the profile's ``python``, default :data:`DEFAULT_PYTHON`)."""
    return profile.get("python") or DEFAULT_PYTHON


def executor_parameters(profile: dict, job_name: str, nodes: int = 1) -> dict:
    """submitit ``SlurmExecutor.update_parameters`` keywords for ``profile`` (its sbatch names), for a job on
    ``nodes`` nodes: one task per node, whose run starts that node's processes (:mod:`ra3lab.runtime`)."""
    params = {
        "job_name": job_name,
        "partition": profile["partition"],
        "account": profile.get("account"),
        "qos": profile.get("qos"),
        "gpus_per_node": profile.get("gpus_per_node") or None,
        "cpus_per_task": profile.get("cpus_per_task", 1),
        "time": profile.get("timeout_min", DEFAULT_TIMEOUT_MIN),
        "signal_delay_s": profile.get("signal_delay_s"),
        "array_parallelism": profile.get("array_parallelism", 256),
        "setup": list(profile.get("setup") or []) or None,
        "additional_parameters": dict(profile.get("additional") or {}) or None,
        **({"nodes": nodes, "ntasks_per_node": 1} if nodes > 1 else {}),
    }
    if profile.get("mem_gb") is not None:
        from submitit.slurm.slurm import _convert_mem

        params["mem"] = _convert_mem(float(profile["mem_gb"]))
    return {key: value for key, value in params.items() if value is not None}
