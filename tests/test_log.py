"""Messages and progress in one style: a rich bar on a terminal, plain lines with rate and ETA every few seconds
anywhere else (files, pipes, SLURM logs), and studies' loops reporting through it."""

import io

from omegaconf import OmegaConf

from ra3lab import log
from ra3lab.log import Meter, progress, say
from ra3lab.runs import Run


class Clock:
    """time.monotonic() for ra3lab.log that the test moves forward."""

    def __init__(self):
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_off_a_terminal_progress_prints_done_rate_and_eta_every_few_seconds(capsys, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(log, "time", clock)
    for _ in progress(range(10), "t2_pruning", "settings", every_s=5):
        clock.now += 2.0                                      # each item takes 2 s
    assert capsys.readouterr().err.splitlines() == [
        "ra3lab t2_pruning: settings 3/10 (30%), 2 s each, 6 s elapsed, ETA 14 s",
        "ra3lab t2_pruning: settings 6/10 (60%), 2 s each, 12 s elapsed, ETA 8 s",
        "ra3lab t2_pruning: settings 9/10 (90%), 2 s each, 18 s elapsed, ETA 2 s",
        "ra3lab t2_pruning: settings done: 10/10 (100%), 2 s each, 20 s elapsed",
    ]


def test_quick_work_off_a_terminal_and_disabled_progress_print_nothing(capsys):
    assert list(progress(iter("abc"), "bench", "letters")) == ["a", "b", "c"]
    assert list(progress(range(3), "bench", "steps", enabled=False, every_s=0)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_on_a_terminal_progress_is_a_rich_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(progress(range(4), "t1_regret_decomposition", "instances", every_s=0)) == [0, 1, 2, 3]
    shown = terminal.getvalue()
    assert "t1_regret_decomposition: instances" in shown and "\x1b[" in shown      # drawn with terminal codes
    assert "ra3lab t1_regret_decomposition:" not in shown                       # no plain lines


def test_the_meter_reads_rates_durations_and_unknown_totals():
    assert Meter(None, done=7, start=0.0).line(now=3.5) == "7, 2/s, 4 s elapsed"
    assert Meter(40, done=0, start=0.0).line(now=3.0) == "0/40 (0%), 3 s elapsed"
    assert Meter(4, done=1, start=0.0).line(now=600.0) == "1/4 (25%), 10.0 min each, 10.0 min elapsed, ETA 30.0 min"
    assert Meter(2, done=1, start=0.0).line(now=7200.0) == "1/2 (50%), 2.0 h each, 2.0 h elapsed, ETA 2.0 h"


def test_messages_have_one_style(capsys):
    say("theory check", "t1_regret_decomposition ...")
    assert capsys.readouterr().err == "ra3lab theory check: t1_regret_decomposition ...\n"


def test_a_runs_loop_reports_under_its_experiment_off_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(log, "EVERY_S", 0.0)
    run = Run(tmp_path / "t2_pruning" / "abc", OmegaConf.create({"seed": 0}))
    run.start(tmp_path)
    assert run.map(lambda step, item: {"value": item}, [5, 6], "settings", "s") == [{"value": 5}, {"value": 6}]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["ra3lab t2_pruning: settings 1/2 (50%)",
                                                      "ra3lab t2_pruning: settings 2/2 (100%)",
                                                      "ra3lab t2_pruning: settings done: 2/2 (100%)"]
