"""What the SLURM controller says about jobs, asked with bounded timeouts.

``squeue`` is the source of truth for "is this job still alive" (sacct lags behind it by seconds
and is absent without slurmdbd); ``sacct`` only names how a finished job ended. Every call has a
timeout: a controller that does not answer gives ``None`` ("unknown"), never a hang.
"""

from __future__ import annotations

import shutil
import subprocess

QUERY_TIMEOUT_S = 20   # seconds allowed to one squeue / sacct / sinfo call


def _run(command: list[str], timeout_s: float = QUERY_TIMEOUT_S) -> str | None:
    """stdout of ``command``, or None when it is missing, fails or times out."""
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None
    return out.stdout if out.returncode == 0 else None


def queued_jobs() -> dict[str, str] | None:
    """{job id: state} of every job squeue lists, or None if squeue does not answer.

    Each job is listed under its own id (``%A``, e.g. 20, what SLURM_JOB_ID holds inside the job)
    and under its array form (``%i``, e.g. 18_1, what submitit returns), so either can be looked up.
    """
    out = _run(["squeue", "-h", "-r", "-o", "%A|%i|%T"])
    if out is None:
        return None
    jobs = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            jobs[parts[0]] = jobs[parts[1]] = parts[2]
    return jobs


def final_states(array_ids: set[str]) -> dict[str, str]:
    """{job id: sacct state} for the jobs of ``array_ids`` that accounting knows ({} without sacct)."""
    if not array_ids:
        return {}
    command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for job_id in sorted(array_ids):
        command += ["-j", job_id]
    out = _run(command)
    if out is None:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    return {job_id: info.get("State", "") for job_id, info in SlurmInfoWatcher().read_info(out).items()}


def cpu_seconds(job_ids: list[str]) -> float | None:
    """CPU seconds SLURM accounted to the jobs of ``job_ids`` (job ids or array task ids ``<array>_<i>``): the sum
    of sacct's TotalCPU over their allocations (steps are part of them); None without accounting."""
    arrays = sorted({job.split("_")[0] for job in job_ids})
    if not arrays:
        return 0.0
    out = _run(["sacct", "-n", "-P", "-o", "JobID,TotalCPU", "-j", ",".join(arrays)])
    if out is None:
        return None
    total = 0.0
    for line in out.splitlines():
        job, _, used = line.partition("|")
        if job and "." not in job and used:
            total += _clock_seconds(used)
    return total


def _clock_seconds(text: str) -> float:
    """Seconds of a sacct duration ``[D-][HH:]MM:SS[.mmm]``."""
    days, _, clock = text.rpartition("-")
    parts = [float(part) for part in clock.split(":")]
    return int(days or 0) * 86400 + sum(value * 60**power for power, value in enumerate(reversed(parts)))


def partitions() -> list[str] | None:
    """The partitions sinfo lists (default partition without its '*'), or None if it does not answer."""
    out = _run(["sinfo", "-h", "-o", "%P"])
    return None if out is None else sorted({line.strip().rstrip("*") for line in out.splitlines() if line.strip()})
