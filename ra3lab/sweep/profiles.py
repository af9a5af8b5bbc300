"""Cluster profiles: ``slurm/profiles/<name>.yaml``, the sbatch resources one sweep's array job asks for.

Every key (see :data:`PROFILE_KEYS`) is optional except ``partition``; the profile maps onto the
parameters of submitit's ``SlurmExecutor`` (:func:`executor_parameters`).
"""

from __future__ import annotations

import os

import yaml

from ra3lab.config import project_root
from ra3lab.errors import ConfigError, check, check_choice

# key: (types accepted, one line on what it sets)
PROFILE_KEYS = {
    "partition": ((str,), "sbatch --partition: the queue the array job goes to"),
    "account": ((str, type(None)), "sbatch --account: the allocation charged (null: the user's default)"),
    "qos": ((str, type(None)), "sbatch --qos: quality of service (null: the partition's default)"),
    "gpus_per_node": ((int, type(None)), "sbatch --gpus-per-node: GPUs for each array task (null or 0: none)"),
    "cpus_per_task": ((int,), "sbatch --cpus-per-task: CPU cores for each array task"),
    "mem_gb": ((int, float), "sbatch --mem: memory for each array task, in GB"),
    "timeout_min": ((int,), "sbatch --time: wall-clock limit of each array task, in minutes"),
    "array_parallelism": ((int,), "sbatch --array=0-(N-1)%P: at most P tasks of the array run at once"),
    "signal_delay_s": ((int,), ("sbatch --signal=USR2@S: seconds before the time limit that a task is told to "
                                "checkpoint and requeue (default 90; SLURM may send it up to 60 s earlier)")),
    "setup": ((list, type(None)), "shell lines run before the job (module load ..., source venv/bin/activate)"),
    "additional": ((dict, type(None)), "any other sbatch parameter, name: value (e.g. constraint: a100)"),
}
PROFILE_ENV = "RA3LAB_SLURM_PROFILE"   # the profile used when --profile is not given
DEFAULT_TIMEOUT_MIN = 60               # sbatch --time when a profile sets no timeout_min


def profile_names() -> list[str]:
    """The profiles available in ``slurm/profiles/``."""
    folder = project_root() / "slurm" / "profiles"
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def load_profile(name: str | None) -> dict:
    """The profile ``name`` (default: $RA3LAB_SLURM_PROFILE), validated; ConfigError naming the fix."""
    name = name or os.environ.get(PROFILE_ENV)
    valid = profile_names()
    check(name is not None, "profile", None, f"--launcher slurm needs --profile NAME (or ${PROFILE_ENV}): "
          f"choose one of {', '.join(valid) or '(none: add slurm/profiles/<name>.yaml)'}")
    check_choice("profile", name, valid)
    path = project_root() / "slurm" / "profiles" / f"{name}.yaml"
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError("profile", str(path), f"is not valid YAML: {str(error).splitlines()[0]}") from None
    check(isinstance(profile, dict), "profile", str(path), f"must be a mapping with keys {', '.join(PROFILE_KEYS)}")
    for key, value in profile.items():
        check(key in PROFILE_KEYS, f"{name}.{key}", "(unknown key)", f"a profile has keys {', '.join(PROFILE_KEYS)}")
        types, meaning = PROFILE_KEYS[key]
        check(isinstance(value, types) and not isinstance(value, bool), f"{name}.{key}", value,
              f"expected {' or '.join(t.__name__ for t in types)}: {meaning}")
    check("partition" in profile, f"{name}.partition", None, "every profile names its partition")
    for key in ("cpus_per_task", "timeout_min", "array_parallelism"):
        check(profile.get(key, 1) >= 1, f"{name}.{key}", profile.get(key), "must be >= 1")
    limit_s = 60 * profile.get("timeout_min", DEFAULT_TIMEOUT_MIN)
    check(1 <= profile.get("signal_delay_s", 1) < limit_s, f"{name}.signal_delay_s", profile.get("signal_delay_s"),
          f"must be >= 1 and below the time limit ({limit_s} s), or every task is signalled as it starts")
    check(profile.get("mem_gb", 1) > 0, f"{name}.mem_gb", profile.get("mem_gb"), "must be > 0 (GB)")
    check(all(isinstance(line, str) for line in profile.get("setup") or []), f"{name}.setup", profile.get("setup"),
          "must be a list of shell lines")
    return {"name": name, **profile}


def executor_parameters(profile: dict, job_name: str) -> dict:
    """submitit ``SlurmExecutor.update_parameters`` keywords for ``profile`` (its sbatch names)."""
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
    }
    if profile.get("mem_gb") is not None:
        from submitit.slurm.slurm import _convert_mem

        params["mem"] = _convert_mem(float(profile["mem_gb"]))
    return {key: value for key, value in params.items() if value is not None}
