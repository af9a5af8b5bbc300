"""Training curves as TensorBoard event files, written while a trainer runs, so that they can be watched live.

A run's trainers write under ``<run dir>/tensorboard/<name>/`` (``pretrain``, the arm's name, ``rlvr``), so that
``tensorboard --logdir runs/`` shows every run; ``metrics.jsonl`` stays the record the plots read. A config's
``tracking.tensorboard: false`` writes none. Training stages keep ``tracking`` among their keys so that it reaches
them; a run's id leaves it out (:data:`ra3lab.runs.NOT_IDENTITY`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from ra3lab.errors import check

FOLDER = "tensorboard"      # in a run directory


def event_dir(config: DictConfig, run_dir: Path, name: str) -> Path | None:
    """``<run_dir>/tensorboard/<name>``, the event files of the trainer ``name``; None when the config's
    ``tracking.tensorboard`` is false."""
    on = config.tracking.tensorboard
    check(isinstance(on, bool), "tracking.tensorboard", on, "must be true or false")
    return run_dir / FOLDER / name if on else None


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
def scalars(folder: Path | None) -> Iterator[Scalars | None]:
    """:class:`Scalars` on ``folder`` (see :func:`event_dir`), closed on exit; None when ``folder`` is None."""
    if folder is None:
        yield None
        return
    track = Scalars(folder)
    try:
        yield track
    finally:
        track.writer.close()
