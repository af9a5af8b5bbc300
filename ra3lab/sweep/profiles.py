"""Cluster profiles: ``slurm/profiles/<name>.yaml``, the sbatch resources one sweep's array job asks for.

Every key (see :data:`PROFILE_KEYS`) is optional except ``partition``; the profile maps onto the
parameters of submitit's ``SlurmExecutor`` (:func:`executor_parameters`).
"""

from __future__ import annotations

import os

from ra3lab.errors import check
from ra3lab.files import PROFILES, Key, load_file

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
    "setup": Key((list,), "shell lines run before the job (module load ..., source venv/bin/activate)", items=str),
    "additional": Key((dict,), "any other sbatch parameter, name: value (e.g. constraint: a100)"),
}
PROFILE_ENV = "RA3LAB_SLURM_PROFILE"   # the profile used when --profile is not given
DEFAULT_TIMEOUT_MIN = 60               # sbatch --time when a profile sets no timeout_min


def load_profile(name: str | None) -> dict:
    """The profile ``name`` (default: $RA3LAB_SLURM_PROFILE), validated; ConfigError naming the fix."""
    name = name or os.environ.get(PROFILE_ENV) or ""
    check(name != "", "profile", None, f"--launcher slurm needs --profile NAME (or ${PROFILE_ENV}): "
          f"choose one of {', '.join(PROFILES.names()) or '(none: add slurm/profiles/<name>.yaml)'}")
    profile = load_file(PROFILES, name, PROFILE_KEYS)
    for key in ("cpus_per_task", "timeout_min", "array_parallelism"):
        check(profile.get(key, 1) >= 1, f"{name}.{key}", profile.get(key), "must be >= 1")
    limit_s = 60 * profile.get("timeout_min", DEFAULT_TIMEOUT_MIN)
    check(1 <= profile.get("signal_delay_s", 1) < limit_s, f"{name}.signal_delay_s", profile.get("signal_delay_s"),
          f"must be >= 1 and below the time limit ({limit_s} s), or every task is signalled as it starts")
    check(profile.get("mem_gb", 1) > 0, f"{name}.mem_gb", profile.get("mem_gb"), "must be > 0 (GB)")
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
