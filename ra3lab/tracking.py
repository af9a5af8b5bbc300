"""Training curves as TensorBoard event files, written while a trainer runs, so that they can be watched live.

A run's trainers write under ``<run dir>/tensorboard/<name>/`` (``pretrain``, the arm's name, ``rlvr``), so that
``tensorboard --logdir runs/`` shows every run; ``metrics.jsonl`` stays the record the plots read. A config's
``tracking.tensorboard: false`` writes none. ``tracking.wandb: offline`` mirrors each trainer's event files into an
offline Weights & Biases run named after the trainer, with the run's resolved config, in
``<run dir>/wandb/offline-run-*`` (no login, no network; ``wandb sync`` uploads it later). Training stages keep
``tracking`` among their keys so that it reaches them; a run's id leaves it out (:data:`ra3lab.runs.NOT_IDENTITY`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path, PosixPath

from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from ra3lab.errors import check

FOLDER = "tensorboard"      # in a run directory
PROJECT = "ra3lab"          # the W&B project of the mirrors


class EventDir(PosixPath):
    """A trainer's folder of event files; ``wandb``: the ``wandb.init`` arguments of the offline W&B run that
    mirrors them (``name``, ``config``, ``dir``), or None."""

    wandb: dict | None = None


def check_tracking(config: DictConfig) -> tuple[bool, bool]:
    """(TensorBoard on, mirrored to W&B) from the config's ``tracking`` block; a ConfigError naming the field for
    a value it cannot honour (checked when a run is planned, before any work)."""
    on, mode = config.tracking.tensorboard, config.tracking.wandb
    check(isinstance(on, bool), "tracking.tensorboard", on, "must be true or false")
    check(mode is None or mode is False or mode == "offline", "tracking.wandb", mode,
          "must be false or offline (an offline W&B run per trainer; upload it later with `wandb sync`)")
    mirrored = mode == "offline"
    check(on or not mirrored, "tracking.wandb", mode,
          "mirrors the TensorBoard curves: set tracking.tensorboard=true, or tracking.wandb=false")
    check(not mirrored or importlib.util.find_spec("wandb") is not None, "tracking.wandb", mode,
          "needs the wandb package: pip install wandb (or pip install -e '.[tracking]'), or set tracking.wandb=false")
    return on, mirrored


def event_dir(config: DictConfig, run_dir: Path, name: str) -> EventDir | None:
    """``<run_dir>/tensorboard/<name>``, the event files of the trainer ``name``, mirrored to W&B under
    ``<run_dir>/wandb/`` when ``tracking.wandb`` is ``offline``; None when ``tracking.tensorboard`` is false."""
    on, mirrored = check_tracking(config)
    if not on:
        return None
    folder = EventDir(run_dir / FOLDER / name)
    if mirrored:
        folder.wandb = {"name": name, "config": OmegaConf.to_container(config, resolve=True), "dir": str(run_dir)}
    return folder


class Scalars:
    """``scalars(step, metrics)`` writes each number of ``metrics`` as the scalar of its key at ``step`` to event
    files in ``folder`` and flushes them, so TensorBoard shows it at once; other values (text, None) are left out.
    ``writer``: the SummaryWriter."""

    def __init__(self, folder: Path):
        self.writer = SummaryWriter(str(folder))

    def __call__(self, step: int, metrics: Mapping[str, object]) -> None:
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()


@contextmanager
def mirror(folder: Path, init: dict) -> Iterator[None]:
    """An offline W&B run (``wandb.init(**init)``) that copies the scalars of the event files written to ``folder``
    while it is open; finished on exit, with exit code 1 when the block raised."""
    import wandb
    from wandb.integration import tensorboard

    wandb.setup(wandb.Settings(mode="offline", silent=True, console="off"))   # this process: no network, no chatter
    tensorboard.patch(root_logdir=str(folder))      # event writers opened from now on report to the run
    try:
        run = wandb.init(project=PROJECT, mode="offline", **init)
        code = 1
        try:
            yield
            code = 0
        finally:
            run.finish(exit_code=code)
    finally:
        tensorboard.unpatch()


@contextmanager
def scalars(folder: Path | None) -> Iterator[Scalars | None]:
    """:class:`Scalars` on ``folder`` (see :func:`event_dir`), closed on exit, mirrored to W&B when ``folder`` says
    so; None when ``folder`` is None."""
    if folder is None:
        yield None
        return
    with ExitStack() as stack:
        init = getattr(folder, "wandb", None)
        if init is not None:
            stack.enter_context(mirror(folder, init))
        track = Scalars(folder)
        stack.callback(track.writer.close)      # before the mirror finishes, so that it reads every event
        yield track
