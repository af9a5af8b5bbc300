"""The ``ra3lab`` command.

    ra3lab run <experiment> [key=value ...] [--quick] [--force] [--json]
    ra3lab theory check [--quick] [--json]
    ra3lab bench <name> [key=value ...] [--json]
    ra3lab list

With ``--json`` the last line of stdout is exactly one JSON object: the command's summary.
Progress and messages go to stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

import yaml

from ra3lab.config import compose_experiment, names
from ra3lab.errors import ConfigError
from ra3lab.runs import json_safe


def cmd_run(args) -> dict:
    from ra3lab.execute import execute

    config = compose_experiment(args.experiment, args.overrides, quick=args.quick)
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
    benchmark = BENCHMARKS[args.name]
    return {"bench": args.name, **benchmark(**bench_params(benchmark, args.params))}


def cmd_list(args) -> dict:
    return {"experiments": names("experiments"), "envs": names("envs")}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ra3lab", description="Study how mid-training shapes RL (RA3).")
    sub = top.add_subparsers(dest="command", required=True)

    def add(name, handler, help):
        command = sub.add_parser(name, help=help)
        command.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
        command.set_defaults(handler=handler)
        return command

    run = add("run", cmd_run, "run one experiment (a YAML in experiments/) with Hydra overrides")
    run.add_argument("experiment", help="name of a file in experiments/ (see `ra3lab list`)")
    run.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, env=<name>, +new_key=value")
    run.add_argument("--quick", action="store_true", help="apply the experiment's `quick:` overrides (small scale)")
    run.add_argument("--force", action="store_true", help="recompute even if the run's summary exists")

    theory = add("theory", cmd_theory_check, "check RA3's theory against exact computation (T1-T3)")
    theory.add_argument("action", choices=["check"])
    theory.add_argument("--quick", action="store_true", help="small instances (about a minute on 2 cores)")
    theory.add_argument("--force", action="store_true", help="recompute runs whose summaries exist")

    bench = add("bench", cmd_bench, "run a benchmark against a named peer, in the same process")
    bench.add_argument("name", help="which benchmark: mdp")
    bench.add_argument("params", nargs="*", help="benchmark parameters as key=value, e.g. n_mdps=200")

    add("list", cmd_list, "list experiments and environments")
    return top


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args, extra = top.parse_known_args(argv)   # overrides may come after options: `run t3 --quick seed=1`
    takes = next((name for name in ("overrides", "params") if hasattr(args, name)), None)
    if extra and (takes is None or any(arg.startswith("-") for arg in extra)):
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    if takes:
        setattr(args, takes, [*getattr(args, takes), *extra])
    try:
        summary = args.handler(args)
    except ConfigError as error:
        print(f"ra3lab: error: {error}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(error), "field": error.field}))
        return 2
    summary = json_safe(summary)
    print(json.dumps(summary, default=float) if args.json else json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
