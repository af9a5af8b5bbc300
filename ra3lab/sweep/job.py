"""The job one sweep point runs, in a pool worker or a SLURM array task.

It lives in the package because submitit and process pools pickle it by reference. As a submitit
``Checkpointable``, a preempted or timed-out SLURM task is requeued with the same call; the run
then resumes from its own checkpoint.json (``execute`` does that), so no state travels in the pickle.
"""

from __future__ import annotations

import os

import submitit

SCALARS = (int, float, bool, str)


class RunJob(submitit.helpers.Checkpointable):
    """``RunJob()(experiment, overrides, quick, runs_root)`` composes and executes one run."""

    def __call__(self, experiment: str, overrides: list[str], quick: bool, runs_root: str) -> dict:
        """Execute one run under ``runs_root`` (skipped if done, resumed if unfinished).

        Returns {"run_dir", "state": "done", "cached", "metrics": the summary's top-level scalars}.
        A failure is recorded in the run's status.json (with its traceback) and re-raised.
        """
        os.environ["RA3LAB_RUNS"] = str(runs_root)
        from ra3lab.config import compose_experiment
        from ra3lab.execute import execute, prepare

        config = compose_experiment(experiment, list(overrides), quick=quick)
        run = prepare(experiment, config)
        try:
            summary = execute(experiment, config)
        except Exception as error:   # not SystemExit: a preempted job exits through it to be requeued
            if run.status().get("state") != "failed":   # e.g. an unreadable checkpoint fails before the study
                run.fail(error)
            raise
        metrics = {key: value for key, value in summary.items()
                   if isinstance(value, SCALARS) and key not in ("run_dir", "cached")}
        return {"run_dir": str(run.path), "state": "done", "cached": bool(summary.get("cached")), "metrics": metrics}
