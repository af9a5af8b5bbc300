"""Messages and progress on stderr, in one style: ``ra3lab <topic>: <message>``.

:func:`progress` shows a rich bar when stderr is a terminal; otherwise (a file, a pipe, a SLURM log) it
prints a plain line at most every :data:`EVERY_S` seconds with done/total, the rate and the time left,
and a last line when work that took that long ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field

EVERY_S = 5.0     # seconds between two plain progress lines


def say(topic: str, message: str) -> None:
    """Write ``ra3lab <topic>: <message>`` to stderr; in a launch of several processes only rank 0 speaks."""
    if os.environ.get("RANK", "0") == "0":
        print(f"ra3lab {topic}: {message}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``seconds`` in the unit that reads best: "42 s", "12.5 min", "3.2 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@dataclass
class Meter:
    """``done`` of ``total`` items (None: unknown) since ``start`` (time.monotonic() seconds)."""

    total: int | None
    done: int = 0
    start: float = field(default_factory=lambda: time.monotonic())

    def line(self, now: float | None = None) -> str:
        """"done/total (percent), rate, elapsed, ETA", e.g. "3/10 (30%), 2.5 s each, 8 s elapsed, ETA 18 s"."""
        elapsed = (time.monotonic() if now is None else now) - self.start
        parts = [f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"]
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{rate:.3g}/s" if rate >= 1 else f"{duration(1 / rate)} each")
        parts.append(f"{duration(elapsed)} elapsed")
        if self.done and self.total and self.done < self.total and elapsed > 0:
            parts.append(f"ETA {duration(elapsed * (self.total - self.done) / self.done)}")
        return ", ".join(parts)


def progress(items: Iterable, topic: str, description: str, *, total: int | None = None, enabled: bool = True,
             every_s: float | None = None) -> Iterator:
    """Iterate over ``items`` reporting progress on stderr (nothing when not ``enabled``). ``total``: the
    number of items, by default ``len(items)`` when it has one; ``every_s``: seconds between plain lines
    (default :data:`EVERY_S`)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    if not enabled or os.environ.get("RANK", "0") != "0":    # in a launch of several processes, rank 0 reports
        yield from items
    elif sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import track

        yield from track(items, total=total, description=f"{topic}: {description}", console=Console(stderr=True))
    else:
        yield from _plain(items, topic, description, Meter(total), EVERY_S if every_s is None else every_s)


def _plain(items: Iterable, topic: str, description: str, meter: Meter, every_s: float) -> Iterator:
    """``items``, with a line ``ra3lab <topic>: <description> <meter>`` at most every ``every_s`` seconds."""
    last = meter.start
    for item in items:
        yield item
        meter.done += 1
        now = time.monotonic()
        if now - last >= every_s:
            say(topic, f"{description} {meter.line(now)}")
            last = now
    if time.monotonic() - meter.start >= every_s:
        say(topic, f"{description} done: {meter.line()}")
