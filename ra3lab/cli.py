"""The ``ra3lab`` command.

    ra3lab run <experiment> [key=value ...] [--quick] [--force] [--dry-run] [--launcher local|slurm]
               [--profile NAME|PATH] [--slurm KEY=VALUE ...] [--timeout S] [--json]
    ra3lab theory check [--quick] [--json]
    ra3lab sweep <sweep> [key=value ...] [--quick] [--launcher local|slurm] [--profile NAME|PATH]
                 [--slurm KEY=VALUE ...] [--workers N] [--dry-run] [--failed] [--timeout S] [--json]
    ra3lab status <sweep-dir | sweep> [--json]
    ra3lab show <run-dir | experiment/run-id> [--json]
    ra3lab tune <space> [--storage URL] [--workers N] [--launcher local|slurm] [--profile NAME|PATH]
                [--slurm KEY=VALUE ...] [--trials N] [--json]
    ra3lab bench <name> [key=value ...] [--json]
    ra3lab demo [--full] [--json]
    ra3lab plot convergence <run-dir | curves.csv | sweep-dir | sweep> [threshold=T] [--out DIR]
    ra3lab plot theory [--out DIR]
    ra3lab plot plan <run-dir [run-dir ...] | sweep-dir | sweep> [--out DIR]
    ra3lab plot heatmap <sweep-dir | sweep> x=KEY y=KEY value=COLUMN|auc|final|steps_to_threshold [threshold=T]
                        [reduce=iqm|mean|median] [--out DIR]
    ra3lab list

With ``--json`` (anywhere on the line) the last line of stdout is exactly one JSON object: the
command's summary, or the error ({"error", "field"} for bad input, exit status 2; {"error", "run",
"step", "cause"} for a run that failed, exit status 1). Progress and messages go to stderr. Without
it, ``sweep`` and ``status`` print a table, and ``run --launcher slurm --dry-run`` the sbatch script.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shlex
import sys
import traceback
from collections.abc import Callable
from typing import cast

import yaml

from ra3lab.errors import ConfigError, RunError, check


class UsageError(ConfigError):
    """A command line that argparse refuses. ``field`` is the argument its message names ("arguments"
    when none), ``usage`` the usage line of the (sub)command; ``str()`` is argparse's message."""

    def __init__(self, prog: str, message: str, usage: str):
        named = re.match(r"argument -*([\w-]+):|the following arguments are required: ([\w-]+)", message)
        super().__init__(next(name for name in named.groups() if name) if named else "arguments", None,
                         f"{prog}: {message}")
        self.prog, self.message, self.usage = prog, message, usage

    def __str__(self) -> str:
        return self.valid


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (and so each subcommand's) that raises UsageError instead of exiting, so that
    :func:`main` answers every error alike (one JSON object with ``--json``)."""

    def error(self, message: str):
        raise UsageError(self.prog, message, self.format_usage())


def cmd_run(args) -> dict:
    from ra3lab.config import compose_experiment
    from ra3lab.sweep.launch import check_launcher

    if args.launcher == "slurm":
        from ra3lab.sweep.job import run_on_slurm

        return run_on_slurm(args.experiment, args.overrides, quick=args.quick, force=args.force, profile=args.profile,
                            slurm=args.slurm, dry_run=args.dry_run, timeout_s=args.timeout)
    check_launcher(args.launcher, args.profile, None, args.slurm)   # local: no profile, no --slurm
    check(args.timeout is None, "timeout", args.timeout, "--timeout bounds the wait for a job: --launcher slurm")
    config = compose_experiment(args.experiment, args.overrides, quick=args.quick)
    from ra3lab.sweep.job import run_argv, spans_processes

    launches = spans_processes(config)
    argv = run_argv(args.experiment, args.overrides, args.quick, args.force)
    from ra3lab.runtime import check_launch, world

    if world()[1] == 1:              # a process of a launch was checked, with its node, before the launch
        check_launch(config)
    if args.dry_run:
        from ra3lab.execute import prepare
        from ra3lab.runtime import launch_command

        run = prepare(args.experiment, config)
        launch = {"launch": launch_command(config.runtime, argv)} if launches else {}
        return {"experiment": args.experiment, "dry_run": True, "run_dir": str(run.path), "done": run.done, **launch}
    from ra3lab.execute import execute, launch_locally

    if launches:
        return launch_locally(args.experiment, config, argv, force=args.force)
    return execute(args.experiment, config, force=args.force)


def cmd_theory_check(args) -> dict:
    from ra3lab.studies.check import theory_check

    return theory_check(quick=args.quick, force=args.force)


def bench_params(benchmark, params: list[str]) -> dict:
    """``key=value`` arguments (values parsed as YAML) checked against the benchmark's parameters."""
    valid = [name for name in inspect.signature(benchmark).parameters if name != "progress"]
    kwargs = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or key not in valid:
            raise ConfigError(key or param, param, f"pass key=value with key one of {', '.join(valid)}")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def cmd_bench(args) -> dict:
    from ra3lab.bench import BENCHMARKS

    if args.name not in BENCHMARKS:
        raise ConfigError("bench", args.name, f"choose one of {', '.join(BENCHMARKS)}")
    benchmark = cast(Callable[..., dict], BENCHMARKS[args.name])   # each takes its own keyword arguments
    return {"bench": args.name, **benchmark(**bench_params(benchmark, args.params))}


def cmd_sweep(args) -> dict:
    from ra3lab.sweep.grid import run_sweep

    return run_sweep(args.sweep, args.overrides, launcher=args.launcher, profile=args.profile, workers=args.workers,
                     dry_run=args.dry_run, failed_only=args.failed, timeout_s=args.timeout, slurm=args.slurm,
                     quick=args.quick)


def render_run(summary: dict) -> None:
    """A SLURM dry run as its run directory, sbatch parameters and script; any other summary as JSON."""
    if "sbatch" not in summary:
        print(json.dumps(summary, indent=2, default=float))
        return
    print(f"[dry run] run {summary['experiment']}: {summary['run_dir']} ({'done' if summary['done'] else 'not done'})")
    print_sbatch(summary["sbatch"], "would submit one job")
    if "launch" in summary:
        print("each node's task would start its processes with:\n" + shlex.join(summary["launch"]["per node"]))


def print_sbatch(sbatch: dict, what: str) -> None:
    """The sbatch parameters and script of a dry run, after ``what`` would be submitted."""
    print(f"{what} with sbatch parameters:")
    for key, value in sbatch["parameters"].items():
        print(f"  {key}: {value}")
    print("sbatch script:\n" + (sbatch["script"] or "(none: nothing to launch)"))


def render_sweep(summary: dict) -> None:
    from ra3lab.sweep.status import render, render_stage_runs

    title = f"sweep {summary['sweep']} ({summary['experiment']}): {summary['sweep_dir']}"
    if summary.get("dry_run") and "stages" in summary:
        render_stage_runs(summary["stages"], summary["line"], f"[dry run] {title}")
        print(f"would launch {len(summary['launch'])} of {summary['n_stage_runs']} stage runs "
              f"({summary['n_runs']} points), one {'array' if 'sbatch' in summary else 'batch'} per level")
        for (level, script), (depth, ids) in zip(summary.get("sbatch", {}).items(), summary["levels"].items()):
            print(f"{level}: would submit an array job of {summary['tasks'][depth]} task(s) for {len(ids)} run(s), "
                  f"sbatch script:\n{script}")
        return
    if summary.get("dry_run"):
        render(summary["runs"], summary["line"], title=f"[dry run] {title}",
               extra={"action": [run["action"] for run in summary["runs"]]})
        n = len(summary["launch"])
        if "sbatch" in summary:
            print_sbatch(summary["sbatch"], f"would submit ONE array job of {n} task(s)")
        else:
            print(f"would run {n} run(s) on {summary['workers']} local worker process(es)")
        return
    render(summary["runs"], summary["line"], title=title)
    for failure in summary["failures"]:      # a point of a flat sweep (index) or a stage run (id)
        print(f"{'#' + str(failure['index']) if 'index' in failure else failure['id']} failed: {failure['error']}")
    print(f"aggregate: {summary['aggregate']}")


def cmd_status(args) -> dict:
    from ra3lab.sweep.status import sweep_status

    return sweep_status(find_sweep_dir(args.sweep_dir))


def find_sweep_dir(name: str):
    """A sweep directory given as a path, or as a sweep name (its most recently launched directory)."""
    from pathlib import Path

    from ra3lab.execute import runs_root

    path = Path(name)
    if (path / "manifest.jsonl").exists():
        return path
    launched = sorted((runs_root() / "sweeps" / name).glob("*/manifest.jsonl"), key=lambda p: p.stat().st_mtime)
    if launched:
        return launched[-1].parent
    known = sorted(str(p.parent) for p in (runs_root() / "sweeps").glob("*/*/manifest.jsonl"))
    raise ConfigError("sweep_dir", name, "not a sweep directory (no manifest.jsonl); launched sweeps: "
                      + (", ".join(known) if known else f"none under {runs_root() / 'sweeps'}"))


def render_status(summary: dict) -> None:
    from ra3lab.sweep.status import render

    render(summary["runs"], summary["line"], title=summary["sweep_dir"])
    for stage, line in summary.get("stages", {}).items():
        print(f"stage {stage}: {line}")


def cmd_show(args) -> dict:
    from ra3lab.execute import runs_root
    from ra3lab.stages import show

    return show(runs_root(), args.run)


def render_show(summary: dict) -> None:
    print(f"{summary['run']}: {summary['state']}" + (f" ({summary['error']})" if summary.get("error") else ""))
    for role, (run, state) in summary["upstream"].items():
        print(f"  upstream {role}: {run} ({state})")
    for run, state in summary["downstream"].items():
        print(f"  downstream: {run} ({state})")
    provenance = summary.get("provenance") or {}
    print(f"  commit {provenance.get('commit')}, SLURM job {provenance.get('slurm_job_id')}, "
          f"started {provenance.get('started')}")


def cmd_tune(args) -> dict:
    from ra3lab.sweep.tune import tune

    return tune(args.space, storage=args.storage, workers=args.workers, launcher=args.launcher, profile=args.profile,
                trials=args.trials, timeout_s=args.timeout, slurm=args.slurm)


def cmd_demo(args) -> dict:
    from pathlib import Path

    from ra3lab.demo import demo

    return demo(quick=not args.full, out=Path(args.out))


def cmd_paper(args) -> dict:
    from pathlib import Path

    from ra3lab.appendix.build import Paper, build, check_paper, pin
    from ra3lab.config import project_root
    from ra3lab.execute import runs_root

    paper = Paper(Path(args.folder) if args.folder else project_root() / "paper", runs_root())
    if args.action == "pin":
        return pin(paper)
    if args.action == "check":
        return check_paper(paper)
    return build(paper, latex=not args.no_latex, force=args.force)


def cmd_plot(args) -> dict:
    from pathlib import Path

    from ra3lab.execute import runs_root
    from ra3lab.plots import paper

    out = Path(args.out)
    if args.kind == "theory":
        return paper.theory(paper.latest_summaries(runs_root()), out)
    if args.source is None:
        raise ConfigError("source", None, f"`ra3lab plot {args.kind}` needs a run directory, file or sweep")
    source = Path(args.source)
    if args.kind == "plan":        # several run directories may follow the first
        return paper.plan([source if source.exists() else find_sweep_dir(args.source), *map(Path, args.params)],
                          out)
    params = {key: yaml.safe_load(value) for key, value in (p.split("=", 1) for p in args.params)}
    if args.kind == "convergence":
        return paper.convergence(source if source.exists() else find_sweep_dir(args.source), out, **params)
    takes = list(inspect.signature(paper.heatmap).parameters)[2:]      # after the sweep and the output folder
    for key in [*params, "x", "y", "value"]:
        if key not in takes or key not in params:
            raise ConfigError(key, params.get(key), "`ra3lab plot heatmap <sweep>` takes x=KEY y=KEY value=COLUMN "
                              "(or auc, final, steps_to_threshold) [threshold=T] [reduce=iqm|mean|median] [reps=N]")
    return paper.heatmap(find_sweep_dir(args.source), out, **params)


def cmd_list(args) -> dict:
    from ra3lab.files import catalogue

    return catalogue()


def render_list(summary: dict) -> None:
    """One table: kind, name and the first comment line of its file."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title_justify="left")
    for column in ("kind", "name", "description"):
        table.add_column(column, overflow="fold")
    for group, described in summary.items():
        for name, description in described.items():
            table.add_row(group.removesuffix("s"), name, description)
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)


def add_slurm_options(command: argparse.ArgumentParser, job: str) -> None:
    """``--profile`` and ``--slurm key=value ...`` (the sbatch resources of ``job``) of ``command``."""
    command.add_argument("--profile", help="cluster profile: a name in slurm/profiles/ or the path of a YAML file "
                                           "(slurm only; default $RA3LAB_SLURM_PROFILE)")
    command.add_argument("--slurm", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                         help=f"override the profile's keys for {job}, e.g. time=60 mem=16 gpus_per_node=2 "
                              "(slurm only; after the Hydra overrides)")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="ra3lab", description="Study how mid-training shapes RL (RA3).")
    json_help = "print the summary, or the error, as one JSON object on the last line of stdout"
    top.add_argument("--json", action="store_true", help=json_help)
    sub = top.add_subparsers(dest="command", required=True)

    def add(name, handler, help, render=None):
        command = sub.add_parser(name, help=help)
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)
        command.set_defaults(handler=handler, render=render)
        return command

    run = add("run", cmd_run, "run one experiment (a YAML in experiments/) with Hydra overrides", render_run)
    run.add_argument("experiment", help="name of a file in experiments/ (see `ra3lab list`)")
    run.add_argument("overrides", nargs="*", default=[],
                     help="Hydra overrides: key=value, env=<name>, +new_key=value")
    run.add_argument("--quick", action="store_true", help="apply the experiment's `quick:` overrides (small scale)")
    run.add_argument("--force", action="store_true", help="recompute even if the run's summary exists")
    run.add_argument("--dry-run", action="store_true", help="compose and validate the config, print the run "
                     "directory and whether it is done (and the sbatch script for slurm); run nothing")
    run.add_argument("--launcher", default="local", help="local (in this process) or slurm (one job, waited for)")
    add_slurm_options(run, "the run's job")
    run.add_argument("--timeout", type=float, help="stop waiting for the job after this many seconds (slurm only)")

    theory = add("theory", cmd_theory_check, "check RA3's theory against exact computation (T1-T3)")
    theory.add_argument("action", choices=["check"])
    theory.add_argument("--quick", action="store_true", help="small instances (about a minute on 2 cores)")
    theory.add_argument("--force", action="store_true", help="recompute runs whose summaries exist")

    bench = add("bench", cmd_bench, "run a benchmark against a named peer, in the same process")
    bench.add_argument("name", help="which benchmark: mdp (value iteration), sweep (SLURM launching), estep (a whole "
                                    "E-step step: prefix-sharing scoring vs one forward per rollout), "
                                    "reward (sandboxed unit tests)")
    bench.add_argument("params", nargs="*", default=[],
                       help="benchmark parameters as key=value, e.g. n_mdps=200")

    sweep = add("sweep", cmd_sweep, "launch a grid over an experiment (a YAML in sweeps/), locally or on SLURM",
                render_sweep)
    sweep.add_argument("sweep", help="name of a file in sweeps/ (see `ra3lab list`)")
    sweep.add_argument("overrides", nargs="*", default=[],
                       help="Hydra overrides on top of the grid: key=a,b adds or replaces an axis")
    sweep.add_argument("--launcher", default="local", help="local (a process pool) or slurm (one array job)")
    sweep.add_argument("--quick", action="store_true", help="every point at its experiment's quick profile")
    add_slurm_options(sweep, "the array job")
    sweep.add_argument("--workers", type=int, help="local worker processes (default: the cores)")
    sweep.add_argument("--dry-run", action="store_true", help="print every run and the sbatch script; submit nothing")
    sweep.add_argument("--failed", action="store_true", help="relaunch only the failed runs")
    sweep.add_argument("--timeout", type=float, help="stop waiting for the jobs after this many seconds")

    status = add("status", cmd_status, "show the state of every run of a launched sweep", render_status)
    status.add_argument("sweep_dir", help="a sweep directory (runs/sweeps/<sweep>/<hash>) or a sweep name (its latest)")

    show = add("show", cmd_show, "show one run: its state, the runs it consumes and the runs that consume it",
               render_show)
    show.add_argument("run", help="a run directory, or its id <experiment>/<run id> under the runs root")

    tune = add("tune", cmd_tune, "tune an experiment with Optuna (a search space sweeps/<space>_space.yaml)")
    tune.add_argument("space", help="search space name: sweeps/<space>_space.yaml")
    tune.add_argument("--storage",
                      help="sqlite:///path.db (default, in the tune dir), journal:///path.log, or an RDB URL")
    tune.add_argument("--workers", type=int, default=1, help="workers at once: local processes or SLURM array tasks")
    tune.add_argument("--launcher", default="local", help="local (processes) or slurm (one array job)")
    add_slurm_options(tune, "the workers' array job")
    tune.add_argument("--trials", type=int, help="the study's target of finished trials (default: the space's trials)")
    tune.add_argument("--timeout", type=float, help="stop waiting for the workers after this many seconds")

    demo = add("demo", cmd_demo, "the whole chain: theory check, CodeWorld mid-training, RLVR, figures (resumable)")
    demo.add_argument("--full", action="store_true", help="full scale instead of every experiment's quick profile")
    demo.add_argument("--out", default="paper/figures", help="folder for the figures")

    plot = add("plot", cmd_plot, "draw the appendix's figures and tables from stored runs")
    plot.add_argument("kind", choices=["convergence", "theory", "plan", "heatmap"])
    plot.add_argument("source", nargs="?",
                      help="convergence: a codeworld_rlvr or codeworld_plan run dir, curves.csv or a sweep; plan: a "
                           "codeworld_plan run dir (more may follow) or a sweep of it; heatmap: a sweep")
    plot.add_argument("params", nargs="*", default=[],
                      help="key=value: threshold=0.5 (convergence); x=, y=, value=, threshold=, reduce= (heatmap)")
    plot.add_argument("--out", default="paper/figures", help="folder for the PDFs, PNGs and tables")

    paper = add("paper", cmd_paper, "the appendix from pinned runs: pin (write paper/runs.yaml from the runs), build "
                "(paper/build/appendix.pdf), check (the pinned runs still give the committed numbers and figures)")
    paper.add_argument("action", choices=["pin", "build", "check"])
    paper.add_argument("--folder", help="the appendix's folder (default: paper/ of the checkout)")
    paper.add_argument("--force", action="store_true", help="build: rebuild even when nothing changed")
    paper.add_argument("--no-latex", action="store_true", help="build: numbers, figures and tables only, no PDF")

    add("list", cmd_list, "list experiments, environments, sweeps and search spaces, each with its description",
        render_list)
    return top


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line's arguments; overrides and params may come after options (`run t3 --quick seed=1`)."""
    top = parser()
    args, extra = top.parse_known_args(argv)
    takes = next((name for name in ("overrides", "params") if hasattr(args, name)), None)
    if extra and (takes is None or any(arg.startswith("-") for arg in extra)):
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    if takes:
        setattr(args, takes, [*getattr(args, takes), *extra])
    return args


def report(error: Exception, as_json: bool, code: int, said: str | None = None, **fields) -> int:
    """Say ``error`` on stderr (as ``said``, else ``ra3lab: error: <error>``) and, with ``as_json``, as one
    JSON object {"error", **fields} on stdout; returns the exit status ``code``."""
    print(said or f"ra3lab: error: {error}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": str(error), **fields}))
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit status: 0, 1 when a run failed (or a sweep's runs
    did), 2 for bad input (argparse's errors included), told before any work."""
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv     # anywhere, and also when the line does not parse
    try:
        args = parse(argv)
        summary = args.handler(args)
    except UsageError as error:
        return report(error, as_json, 2, f"{error.usage}{error.prog}: error: {error.message}", field=error.field,
                      usage=error.usage.strip())
    except ConfigError as error:
        return report(error, as_json, 2, field=error.field)
    except RunError as error:
        return report(error, as_json, 1, f"ra3lab: error: {error} (traceback: {error.run}/status.json)",
                      run=error.run, step=error.step, cause=error.cause)
    except Exception as error:
        if not as_json:
            raise
        traceback.print_exc()
        return report(error, as_json, 1, type=type(error).__name__)
    from ra3lab.runs import json_safe

    summary = json_safe(summary)
    if as_json:
        print(json.dumps(summary, default=float))
    elif args.render is not None:
        args.render(summary)
    else:
        print(json.dumps(summary, indent=2, default=float))
    return 1 if summary.get("failures") else 0   # a sweep whose runs failed: the summary lists them


if __name__ == "__main__":
    sys.exit(main())
