"""One figure style: every command draws with the same rcParams and saves through the same saver, so a figure is
the same file whichever command draws it."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from omegaconf import OmegaConf

from ra3lab.config import compose_experiment
from ra3lab.execute import execute, runs_root
from ra3lab.plots import paper
from ra3lab.plots.style import RC, figure, log_axes, save
from ra3lab.runs import Run

# The studies the demo has run, so imported, by the time it draws its figures: the theory check's and CodeWorld's.
DEMO_STUDIES = ("regret_decomposition", "pruning", "horizon", "abstraction", "codeworld_ra3", "codeworld_rlvr")


def summary(runs: Path, experiment: str, content: dict) -> None:
    folder = runs / experiment / "0123456789ab"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(content))


def theory_runs(runs: Path) -> None:
    """Summaries of T2, T3 and the CodeWorld study with the fields the theory figure reads."""
    fit = {"slope": -0.5, "low": -0.6, "high": -0.4, "predicted_full": -0.5, "predicted_eps": -0.3}
    summary(runs, "t2_pruning", {"thm_3_5_slopes": {"none/observed": {"n_options": fit, "n_eps": fit, "sigma": fit}}})
    settings = [{"gamma": 0.9, "family": "chain", "tau": tau, "policy_sweeps": 40 / tau, "bound": 60 / tau}
                for tau in (1, 2, 4)]
    summary(runs, "t3_horizon", {"families": {"chain": {}}, "settings": settings})
    summary(runs, "codeworld_ra3", {"boundary_rate": 0.3, "arms": {
        "ntp": {}, "ra3_c0.01": {"infused_rate": 0.5}, "ra3_c0.1": {"infused_rate": 0.2}}})


def test_plot_theory_and_the_demo_write_byte_identical_theory_figures(tmp_path, isolated_runs):
    """`ra3lab plot theory` (a fresh process importing only the plotting code) and the demo's figure step (here,
    after importing the demo and every study it runs) give the same PDF and PNG bytes from the same runs; the
    PDF carries no creation date."""
    theory_runs(isolated_runs)
    plot = subprocess.Popen([sys.executable, "-m", "ra3lab.cli", "plot", "theory", "--out", str(tmp_path / "plot")],
                            env={**os.environ, "RA3LAB_RUNS": str(isolated_runs)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    import ra3lab.demo  # noqa: F401

    for name in DEMO_STUDIES:
        importlib.import_module(f"ra3lab.studies.{name}")
    paper.theory(paper.latest_summaries(runs_root()), tmp_path / "demo")
    _, err = plot.communicate(timeout=300)
    assert plot.returncode == 0, err
    for suffix in ("pdf", "png"):
        by_plot, by_demo = (tmp_path / name / f"theory.{suffix}" for name in ("plot", "demo"))
        assert by_plot.read_bytes() == by_demo.read_bytes(), suffix
    assert b"CreationDate" not in (tmp_path / "plot" / "theory.pdf").read_bytes()


def test_a_study_draws_the_same_figure_from_its_own_command_and_inside_the_demo(tmp_path, isolated_runs):
    """`ra3lab run` (a fresh process that never imports the plotting code) and a process that has (the demo's,
    here this one) write the same T1 figure for the same config."""
    overrides = ["n_instances=1", "mc_instances=0", "mc_episodes=0"]
    alone = subprocess.run([sys.executable, "-m", "ra3lab.cli", "run", "t1_regret_decomposition", *overrides],
                           env={**os.environ, "RA3LAB_RUNS": str(tmp_path / "alone")}, capture_output=True, text=True,
                           timeout=300, check=False)
    assert alone.returncode == 0, alone.stderr
    inside = execute("t1_regret_decomposition", compose_experiment("t1_regret_decomposition", overrides))
    for path in map(Path, inside["figures"]):
        assert path.read_bytes() == (tmp_path / "alone" / path.relative_to(isolated_runs)).read_bytes(), path.name


def draw():
    fig, (ax,) = figure(1, 3.0, 2.0)
    ax.plot([1, 10, 100], [3, 2, 1], label="line")
    ax.set(title="title", xlabel="x")
    ax.legend()
    return fig


def test_every_figure_starts_in_the_style_whatever_was_set_before():
    with plt.rc_context({"font.size": 13.0, "axes.grid": False}):     # as a module setting its own style would
        fig = draw()
        assert fig.axes[0].title.get_fontsize() == RC["axes.titlesize"] and fig.axes[0].xaxis.label.get_size() == 8
        assert {key: plt.rcParams[key] for key in RC} == RC
    plt.close(fig)


def test_a_run_saves_its_figures_through_the_same_saver(tmp_path):
    """The same drawing saved by a study's run and by `ra3lab plot` is the same pair of files."""
    run = Run(tmp_path / "runs" / "t1" / "abc", OmegaConf.create({}))
    by_run = run.save_figure(draw(), "same")
    by_plot = save(draw(), tmp_path / "plot", "same")
    assert [path.name for path in by_run] == ["same.pdf", "same.png"] and by_run[0].parent == run.path / "figures"
    assert [path.read_bytes() for path in by_run] == [path.read_bytes() for path in by_plot]
    assert plt.imread(by_run[1]).shape[1] > 2.5 * RC["savefig.dpi"]           # 3 inches at the style's dpi


def test_log_axes_label_their_ticks_plainly():
    fig, (ax,) = figure(1)
    ax.plot([1, 100], [1, 20])
    log_axes(ax, [1, 10, 100])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]
    shown = [float(t.get_text()) for t in ax.get_yticklabels() if t.get_text()]
    assert set(shown) >= {1, 2, 5, 10, 20} and not ax.yaxis.get_minorticklocs().size
    assert np.allclose(ax.get_xticks(), [1, 10, 100])
    plt.close(fig)
