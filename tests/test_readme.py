"""Every `ra3lab` command in the README's code blocks runs as written, or, where it would take long,
parses and validates without running.

How each command is checked (``check``):

- ``list`` runs as written; ``status`` and ``plot heatmap`` too, on a one-run launch of the README's
  sweep (``test_the_readme_sweep_commands_read_a_launched_sweep``, slow: the launch spawns a worker
  process); the fast test only parses them;
- ``run`` runs with ``--dry-run`` (composed, type-checked and validated by its study; nothing runs);
- ``sweep`` runs with ``--dry-run`` (every point composed and validated, the sbatch script written);
- ``theory check`` and ``demo``: each experiment they run, as ``run ... --dry-run`` (quick unless ``--full``),
  and the demo's sweep as ``sweep ... --dry-run``;
- ``bench``: its parameters checked against the benchmark's (``bench_params``);
- ``tune``: the space loaded and its bounds validated, the launcher, profile and storage checked;
- commands on inputs the reader brings (``<id>``, a real corpus, a shared folder, the theory runs
  ``plot theory`` draws, the pinned runs of ``paper``) only parse, and their experiment composes (a tune line:
  all but its storage).

The ``$ ra3lab ...`` lines of plain blocks are examples of errors: each prints what the README shows.
"""

import functools
import re
import shlex
from pathlib import Path

import pytest

from ra3lab.cli import bench_params, main, parse
from ra3lab.config import compose_experiment

README = Path(__file__).resolve().parents[1] / "README.md"
OTHER_PROGRAMS = {"make", "cat", "optuna-dashboard"}          # shell lines in the README that are not ra3lab's
READER_INPUT = ("<id>", "code.jsonl", "mbpp.jsonl", "/shared/")   # paths the reader fills in or brings
NEEDS_RUNS = (["plot", "theory"], ["paper"])                # draw what `ra3lab theory check` / the demo stored
NEEDS_SWEEP = (["status"], ["plot", "heatmap"])             # read a launched sweep
TINY_T4 = ["surface.budgets=[2],[4]", "surface.penalties=[0.0],[1.0]", "seed=0", "trials=2", "rl_budgets=[250]",
           "vocab_sizes=[32]", "sample_sizes=[4]", "surface.n_samples=8"]


def blocks() -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block of the README."""
    found = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [(language, body.splitlines()) for language, body in found]


def commands() -> list[list[str]]:
    """The argv (after ``ra3lab``) of every command line of the README's bash blocks."""
    lines = [shlex.split(line, comments=True) for language, body in blocks() if language == "bash" for line in body]
    lines = [line for line in lines if line]
    assert {line[0] for line in lines} <= {"ra3lab", *OTHER_PROGRAMS}, "a new program in the README: check it here"
    return [line[1:] for line in lines if line[0] == "ra3lab"]


def error_examples() -> list[tuple[list[str], str]]:
    """(argv, the error line the README shows) of each ``$ ra3lab ...`` line of a plain block."""
    examples = []
    for language, body in blocks():
        for line, shown in zip(body, [*body[1:], ""]):
            if language == "" and line.startswith("$ ra3lab "):
                examples.append((shlex.split(line)[2:], shown))
    return examples


@functools.cache          # `theory check` and `demo` validate the same experiments: once each
def dry_run(experiment: str, *args: str) -> None:
    assert main(["run", experiment, *args, "--dry-run", "--json"]) == 0, (experiment, args)


def check(argv: list[str], tmp_path: Path) -> None:
    """Run, dry-run or validate one README command (see the module docstring)."""
    args = parse(argv)
    brought = any(token in arg for arg in argv for token in READER_INPUT)
    if args.command == "tune":
        check_tune(args, storage=not brought)
    elif brought or argv[:2] in NEEDS_RUNS or argv[:1] in NEEDS_RUNS:
        if args.command == "run":
            compose_experiment(args.experiment, args.overrides, quick=args.quick)
    elif args.command == "run":
        dry_run(args.experiment, *argv[2:])
    elif args.command == "sweep":
        assert main([*argv, "--json"] + ([] if args.dry_run else ["--dry-run"])) == 0, argv
    elif args.command == "theory":
        from ra3lab.studies.check import CHECKS

        for name in CHECKS:
            dry_run(name, *(["--quick"] if args.quick else []))
    elif args.command == "demo":
        from ra3lab.demo import SURFACE
        from ra3lab.studies.check import CHECKS

        for name in (*CHECKS, "codeworld_plan"):
            dry_run(name, *([] if args.full else ["--quick"]))
        assert main(["sweep", SURFACE, "--dry-run", "--json", *([] if args.full else ["--quick"])]) == 0
    elif args.command == "bench":
        from ra3lab.bench import BENCHMARKS

        bench_params(BENCHMARKS[args.name], args.params)
    else:     # list, status, plot heatmap: as written, their files in tmp_path
        out = ["--out", str(tmp_path / "figures")] if args.command == "plot" else []
        assert main([*argv, *out, "--json"]) == 0, argv


def needs_sweep(argv: list[str]) -> bool:
    return any(argv[:len(prefix)] == prefix for prefix in NEEDS_SWEEP)


def check_tune(args, storage: bool) -> None:
    """What `ra3lab tune` validates before it starts a worker (the storage unless it is the reader's)."""
    from ra3lab.sweep.launch import check_launcher
    from ra3lab.sweep.space import check_bounds, load_space
    from ra3lab.sweep.storage import storage_url

    space = load_space(args.space)
    check_bounds(space)
    check_launcher(args.launcher, args.profile, args.workers if args.launcher == "local" else None)
    if storage:
        storage_url(space.name, args.storage)


def test_the_readme_lists_the_commands_this_test_checks():
    argvs = commands()
    assert len(argvs) >= 30
    assert {argv[0] for argv in argvs} == {"list", "run", "theory", "bench", "demo", "plot", "sweep", "status",
                                           "tune", "show", "paper"}


def test_every_readme_command_runs_or_validates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # relative outputs (paper/figures, runs/tune) stay out of the checkout
    for argv in commands():
        if needs_sweep(argv):
            parse(argv)
        else:
            check(argv, tmp_path)


@pytest.mark.slow
def test_the_readme_sweep_commands_read_a_launched_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "t4_budget_penalty", *TINY_T4, "--workers", "1", "--json"]) == 0   # 2 x 2 tiny points
    readers = [argv for argv in commands() if needs_sweep(argv)]
    assert sorted(argv[0] for argv in readers) == ["plot", "status"]
    for argv in readers:
        check(argv, tmp_path)
    name = "heatmap_t4_budget_penalty_surface_best_regret"
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == [f"{name}.{suffix}"
                                                                               for suffix in ("csv", "pdf", "png")]


@pytest.mark.parametrize("argv, shown", error_examples())
def test_the_readme_error_examples_print_what_it_shows(argv, shown, capsys):
    assert main(argv) == 2
    printed = capsys.readouterr().err.strip().splitlines()[-1]
    assert printed.startswith(shown.removesuffix("...")), (printed, shown)
