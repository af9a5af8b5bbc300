"""``ra3lab tune``: an Optuna ask/tell driver whose workers run as local processes or SLURM array tasks.

    ra3lab tune <space> [--storage URL] [--workers N] [--launcher local|slurm] [--profile NAME]
                        [--trials N] [--json]

    <space>      sweeps/<space>_space.yaml (see ra3lab.sweep.space for the format)
    --storage    where the study lives (default: sqlite:///<runs>/tune/<space>/study.db):
                   sqlite:///path/study.db        one file; local workers or nodes that share its folder
                   journal:///path/journal.log    Optuna's journal file (JournalFileBackend): append-only,
                                                  safe on NFS, for workers across nodes
                   postgresql://user:pw@host/db   any SQLAlchemy RDB URL (driver installed, server up)
    --workers    workers started at once: local processes, or SLURM array tasks (default 1)
    --launcher   local (processes on this machine) | slurm (one array job through submitit)
    --profile    slurm/profiles/<NAME>.yaml for --launcher slurm (partition, time, setup lines)
    --trials     the study's target of finished trials (default: the space's `trials:`); run again
                 with a larger N to continue the same study
    --json       the summary below as one JSON object on the last line of stdout

Every worker loops {claim a trial, compose the experiment with the trial's params, execute it with a
reporter that reports the space's `intermediate` metric and raises TrialPruned when the pruner says so,
tell the objective} until no trial is left. Exactly N trials run in all: before launching, the driver
enqueues one WAITING "ticket" per trial still to run, and a worker only starts a trial by moving a
ticket from WAITING to RUNNING, which only one worker can do (an RDB server locks the row, the journal
orders its log, and an flock beside a SQLite file serialises claims); parameters are sampled when the
ticket is claimed, so the sampler sees every trial told before. Finished = COMPLETE + PRUNED + FAIL.

Resuming: the study is loaded if it exists. A trial left RUNNING by a worker that is gone (its SLURM job
is no longer queued, or its process on this host is dead) is told FAIL with the user attribute
``interrupted`` and its parameters are enqueued again; interrupted trials do not count towards N.
Do not run two drivers of one study at the same time.

The best trial is written as ``<runs>/tune/<space>/best.yaml`` with the ``ra3lab run`` command that
reruns its config, printed at the end. ``optuna-dashboard <storage URL>`` (for a journal file:
``optuna-dashboard <path>.log``) shows the study while it runs: intermediate values, pruned trials,
parameter importances. Each trial is one run directory (``<runs>/<experiment>/<id>``; its config has
``tune.space`` and ``tune.trial``); the trial's user attributes hold ``run_dir``, ``worker`` and ``error``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ra3lab.config import project_root
from ra3lab.errors import ConfigError, check
from ra3lab.execute import execute, prepare, runs_root
from ra3lab.log import say
from ra3lab.runs import atomic_write, json_safe
from ra3lab.sweep.best import best_trial, export_best
from ra3lab.sweep.space import Space, check_bounds, is_number, load_space
from ra3lab.sweep.status import Queue, job_alive
from ra3lab.sweep.storage import claims_lock, locked, open_storage, open_study, shown, storage_url, tune_dir

CLAIM_RETRIES = 20


# --- the trial counts ---------------------------------------------------------------------------

def _counts(trials) -> dict:
    """Trials by state, plus ``counted`` (finished, not interrupted) and ``interrupted``."""
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    interrupted = sum(t.state == TrialState.FAIL and bool(t.user_attrs.get("interrupted")) for t in trials)
    counts.update(interrupted=interrupted, counted=counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"] - interrupted)
    return counts


def worker_info() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def recover(study: optuna.Study) -> list[int]:
    """Tell FAIL (``interrupted``) every RUNNING trial whose worker is gone, or cannot be checked (see
    :func:`~ra3lab.sweep.status.job_alive`), and enqueue its parameters again; returns the numbers of
    those trials."""
    queue, failed = Queue(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if job_alive(trial.user_attrs.get("worker"), queue):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        failed.append(trial.number)
    return failed


def enqueue_tickets(study: optuna.Study, target: int) -> int:
    """Enqueue WAITING trials (no parameters yet) until finished + running + waiting = ``target``."""
    counts = _counts(study.get_trials(deepcopy=False))
    need = target - counts["counted"] - counts["RUNNING"] - counts["WAITING"]
    for _ in range(max(0, need)):
        study.enqueue_trial({})
    return max(0, need)


def claim(study: optuna.Study, target: int, lock: Path | None = None) -> optuna.Trial | None:
    """Move one WAITING trial to RUNNING for this worker (exactly one worker can), or None when none
    is left or ``target`` trials are finished or running. ``lock``: :func:`claims_lock` of the URL."""
    for attempt in range(CLAIM_RETRIES):
        try:
            with locked(lock):
                trials = study.get_trials(deepcopy=False)
                counts = _counts(trials)
                if counts["counted"] + counts["RUNNING"] >= target:
                    return None
                for frozen in trials:
                    if frozen.state != TrialState.WAITING:
                        continue
                    try:
                        if study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                            trial = optuna.Trial(study, frozen._trial_id)
                            trial.set_user_attr("worker", worker_info())
                            return trial
                    except optuna.exceptions.UpdateFinishedTrialError:
                        continue
                return None
        except optuna.exceptions.StorageInternalError:   # e.g. SQLite busy under contention: try again
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"could not claim a trial after {CLAIM_RETRIES} tries: the storage stays busy")


# --- one worker ---------------------------------------------------------------------------------

class Reporter:
    """``execute``'s reporter: reports the space's intermediate metric (its k-th value at step k) and
    raises ``optuna.TrialPruned`` when the pruner says so."""

    def __init__(self, trial: optuna.Trial, key: str | None):
        self.trial, self.key, self.steps = trial, key, 0

    def __call__(self, step: int, metrics: dict) -> None:
        value = metrics.get(self.key) if self.key else None
        if not is_number(value):
            return
        self.trial.report(float(value), self.steps)
        self.steps += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at {self.key} value {self.steps - 1} (step {step}) = {value:g}")


def run_trial(space: Space, study: optuna.Study, trial: optuna.Trial, strict: bool = False) -> str:
    """Evaluate one claimed trial as one run and tell its outcome; returns the state's name.

    A run that raises is told FAIL (``error`` user attribute). With ``strict`` (a worker's first
    evaluated trial) a missing objective or intermediate key raises ConfigError: the space is wrong.
    """
    try:
        values = {param.name: param.suggest(trial) for param in space.params}
        config = space.compose(values, [f"+tune.space={space.name}", f"+tune.trial={trial.number}"])
        trial.set_user_attr("run_dir", str(prepare(space.experiment, config).path))
        reporter = Reporter(trial, space.intermediate)
        summary = execute(space.experiment, config, reporter=reporter)
        metrics_path = Path(summary["run_dir"]) / "metrics.jsonl"
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
        value = space.objective_value(summary, metrics)
        check(not strict or not space.intermediate or reporter.steps > 0, f"{space.name}.intermediate",
              space.intermediate, f"the run logged no number under it; its metrics keys are "
              f"{sorted({key for line in metrics for key in line})}")
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return "PRUNED"
    except Exception as error:
        trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:1000])
        study.tell(trial, state=TrialState.FAIL)
        if strict and isinstance(error, ConfigError) and error.field.startswith(f"{space.name}."):
            raise
        return "FAIL"
    study.tell(trial, value)
    return "COMPLETE"


def worker(space: str, storage: str, target: int, index: int = 0, root: str | None = None,
           runs: str | None = None) -> dict:
    """One tuning worker (a local process or a SLURM array task): claim and run trials until none is
    left. Returns {"worker", "host", "slurm_job_id", "trials": [{"number", "state"}]}."""
    if root:
        os.environ["RA3LAB_ROOT"] = root
    if runs:
        os.environ["RA3LAB_RUNS"] = runs
    loaded = load_space(space)
    study = open_study(loaded, open_storage(storage), worker=index)
    done: list[dict] = []
    while (trial := claim(study, target, claims_lock(storage))) is not None:
        strict = not any(item["state"] != "PRUNED" for item in done)
        state = run_trial(loaded, study, trial, strict=strict)
        done.append({"number": trial.number, "state": state})
        frozen = study.get_trials(deepcopy=False)[trial.number]
        detail = frozen.value if frozen.state == TrialState.COMPLETE else frozen.user_attrs.get("error", "")
        say("tune", f"worker {index}: trial {trial.number} {done[-1]['state']} {frozen.params} {detail or ''}")
    return {"worker": index, **worker_info(), "trials": done}


# --- the driver ---------------------------------------------------------------------------------

def tune(space: str, storage: str | None = None, workers: int = 1, launcher: str = "local",
         profile: str | None = None, trials: int | None = None, *, timeout_s: float | None = None,
         slurm: list[str] | tuple[str, ...] = ()) -> dict:
    """Run the study of ``sweeps/<space>_space.yaml`` up to ``trials`` finished trials with ``workers``
    workers, write the best trial into the study's folder (``best.yaml``, with the command that reruns it),
    and return the summary (JSON-able).

    Everything is validated before anything is submitted (ConfigError naming the field and the fix):
    the space, the params' bounds (the study validates the config at each end), the launcher and
    profile, and the storage (it is opened).
    ``timeout_s`` bounds the wait for the workers (None: until they end); ``slurm``: ``--slurm key=value``
    overrides of the profile.
    """
    from ra3lab.sweep.launch import check_cluster, check_launcher, launch

    start = time.time()
    loaded = load_space(space)
    target = loaded.trials if trials is None else trials
    check(isinstance(target, int) and not isinstance(target, bool) and target >= 1, "trials", target,
          "must be an int >= 1: the study's target of finished trials")
    check(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1, "workers", workers,
          "must be >= 1 (local processes or SLURM array tasks)")
    cluster = check_launcher(launcher, profile, workers if launcher == "local" else None, slurm)
    if cluster is not None:
        check_cluster(cluster)
    check_bounds(loaded)
    url = storage_url(loaded.name, storage)
    study = open_study(loaded, open_storage(url), create=True)
    folder = tune_dir(loaded.name)
    folder.mkdir(parents=True, exist_ok=True)

    interrupted = recover(study)
    enqueue_tickets(study, target)
    counts = _counts(study.get_trials(deepcopy=False))
    to_run = counts["WAITING"]
    dashboard = f"optuna-dashboard {shown(url).removeprefix('journal://')}"
    say("tune", f"study '{loaded.name}' ({loaded.experiment}, {loaded.direction} {loaded.objective_name()}) in "
                f"{shown(url)}: {counts['counted']} of {target} trials finished"
                f"{f', {len(interrupted)} interrupted ones failed and re-enqueued' if interrupted else ''}; "
                f"{to_run} to run on {workers} {launcher} worker(s). Watch: {dashboard}")
    outcomes = []
    if to_run:
        n_workers = min(workers, to_run)
        kwargs = [{"space": loaded.name, "storage": url, "target": target, "index": i,
                   "root": str(project_root()), "runs": str(runs_root())} for i in range(n_workers)]

        def report(i, outcome):
            detail = (f"{len(outcome.result['trials'])} trial(s)" if outcome.ok else f"failed: {outcome.error}")
            say("tune", f"worker {i}{f' (job {outcome.job_id})' if outcome.job_id else ''} ended: {detail}")

        outcomes = launch(worker, kwargs, launcher=launcher, profile=cluster if cluster else None,
                          folder=folder / "jobs", workers=n_workers if launcher == "local" else None,
                          timeout_s=timeout_s, on_outcome=report, job_name=f"tune-{loaded.name}")

    study = open_study(loaded, open_storage(url))
    trials_now = study.get_trials(deepcopy=False)
    counts = _counts(trials_now)
    best = best_trial(study)
    best_file, command = export_best(loaded, best, url) if best else (None, None)
    summary = json_safe({
        "space": loaded.name, "study": loaded.name, "experiment": loaded.experiment, "storage": shown(url),
        "dashboard": dashboard, "objective": loaded.objective_name(), "direction": loaded.direction,
        "target_trials": target, "n_trials": {key: value for key, value in counts.items() if value or key == "counted"},
        "interrupted_now": interrupted,
        "best_trial": best.number if best else None, "best_value": best.value if best else None,
        "best_params": best.params if best else None, "best_run_dir": best.user_attrs.get("run_dir") if best else None,
        "best_yaml": str(best_file) if best_file else None, "best_command": command,
        "tune_dir": str(folder),
        "workers": [{"ok": o.ok, "job_id": o.job_id, "error": o.error,
                     "trials": [t["number"] for t in o.result["trials"]] if o.ok else None} for o in outcomes],
        "wall_time_s": round(time.time() - start, 3),
    })
    atomic_write(folder / "tune.json", json.dumps(summary, indent=2))
    if best is not None:
        say("tune", f"best {loaded.objective_name()} = {best.value:.6g} at trial {best.number} {best.params}; "
                    f"wrote {best_file}. Rerun it: {command}")
    else:
        say("tune", "no trial completed: nothing to export")
    return summary
