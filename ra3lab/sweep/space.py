"""Search spaces for ``ra3lab tune``: ``sweeps/<name>_space.yaml``, validated before any work.

A space file (``ra3lab tune <name>``; the ``_space`` suffix tells it from a grid sweep) starts like a
sweep file (``experiment``, ``quick``, ``fixed``) and, in place of ``grid``, says what to tune::

    # one line: what is tuned and why
    experiment: t4_abstraction         # a name in experiments/
    quick: true                        # optional: start from the experiment's `quick:` profile
    fixed:                             # optional: Hydra overrides applied to every trial
      - sample_sizes=[16]
    objective: surface_best.regret     # a summary key (dotted for nested ones), or
                                       # {metric: <metrics key>, reduce: mean|min|max|first|last|sum}
    direction: minimize                # minimize | maximize
    intermediate: theory/t4/surface/regret  # optional: a metrics key reported at each logged value
    pruner: {type: median, n_startup_trials: 4}  # median (default) | percentile | hyperband |
                                                 # successive_halving | threshold | none; other keys: its arguments
    sampler: {type: tpe, seed: 0}      # tpe (default) | random | qmc | gp; other keys: its arguments
    trials: 24                         # default for --trials: the study's target of finished trials
    params:                            # <name>: a distribution over one experiment key
      penalty: {key: surface.penalties, type: float, low: 0.0, high: 8.0, repeat: 3}
      surface.n_samples: {type: int, low: 2, high: 32, log: true}

Param fields: ``type`` float | int | categorical; ``low``/``high`` (float, int; low < high), ``log``
(low > 0), ``step``; ``choices`` (categorical); ``key`` the experiment key it sets (default: the
param's name); ``repeat`` for a list-valued key: the key is set to ``[value] * repeat`` (default 1),
e.g. replicates of one cell of a grid-valued study. Keys are checked against the experiment after
``quick`` and ``fixed``.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeGuard

import optuna
from omegaconf import OmegaConf

from ra3lab.config import compose_experiment, flat_keys
from ra3lab.errors import ConfigError, check, check_choice
from ra3lab.files import SPACES, Key, load_file
from ra3lab.sweep.spec import HEADER_KEYS

PARAM_KEYS = ("type", "low", "high", "log", "step", "choices", "key", "repeat")
REDUCERS: dict[str, Callable[[list], float]] = {
    "mean": lambda v: sum(v) / len(v), "min": min, "max": max, "first": lambda v: v[0], "last": lambda v: v[-1],
    "sum": sum}
PRUNERS = {"median": optuna.pruners.MedianPruner, "percentile": optuna.pruners.PercentilePruner,
           "hyperband": optuna.pruners.HyperbandPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "threshold": optuna.pruners.ThresholdPruner, "none": optuna.pruners.NopPruner}
SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "qmc": optuna.samplers.QMCSampler, "gp": optuna.samplers.GPSampler}
EXECUTE_KEYS = ("experiment", "seed", "run_dir", "wall_time_s")   # what execute() adds to every summary
DEFAULT_TRIALS = 20
SPACE_KEYS = {
    **HEADER_KEYS,
    "objective": Key((str, dict), "a summary key (e.g. abstraction_final_regret; dotted paths reach nested keys), "
                                  "or {metric: <metrics key>, reduce: mean}", required=True),
    "direction": Key((str,), "whether the objective is minimized (default) or maximized",
                     choices=("minimize", "maximize")),
    "intermediate": Key((str,), "a metrics key the pruner watches, e.g. theory/t4/surface/regret"),
    "pruner": Key((dict,), f"a mapping like {{type: median}}: type one of {', '.join(PRUNERS)}, then its arguments"),
    "sampler": Key((dict,), f"a mapping like {{type: tpe}}: type one of {', '.join(SAMPLERS)}, then its arguments"),
    "trials": Key((int,), f"an int >= 1, the study's target of finished trials (default {DEFAULT_TRIALS})"),
    "params": Key((dict,), "name at least one experiment key with a distribution, "
                           "e.g. sigma: {type: float, low: 0.1, high: 1.0}", required=True),
}


def hydra_value(value) -> str:
    """``value`` in Hydra's override grammar (lists, dicts with plain keys, quoted strings)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {hydra_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hydra_value(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


@dataclass(frozen=True)
class Param:
    """One dimension of the space: an Optuna distribution over one experiment key."""

    name: str
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    repeat: int | None = None     # set for list-valued keys: the key becomes [value] * repeat

    def suggest(self, trial: optuna.Trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None, "a float or int param has bounds"
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))

    def override(self, value) -> str:
        return f"{self.key}={hydra_value([value] * self.repeat if self.repeat else value)}"

    def bounds(self) -> tuple:
        return (self.low, self.high) if self.type != "categorical" else (self.choices[0], self.choices[-1])


@dataclass(frozen=True)
class Space:
    """A loaded, validated search space (see the module docstring for the file format)."""

    name: str
    experiment: str
    quick: bool
    fixed: tuple[str, ...]
    objective: str | dict
    direction: Literal["minimize", "maximize"]
    intermediate: str | None
    pruner: dict
    sampler: dict
    trials: int
    params: tuple[Param, ...]
    raw: dict = field(default_factory=dict, compare=False)

    def overrides(self, values: dict) -> list[str]:
        """The Hydra overrides of one trial: ``fixed``, then each param set to ``values[name]``."""
        return [*self.fixed, *(param.override(values[param.name]) for param in self.params)]

    def compose(self, values: dict, extra: Sequence[str] = ()):
        return compose_experiment(self.experiment, self.overrides(values) + list(extra), quick=self.quick)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        kwargs = {key: value for key, value in self.pruner.items() if key != "type"}
        return PRUNERS[self.pruner["type"]](**kwargs)

    def make_sampler(self, worker: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler of worker ``worker``: its seed is offset by the worker's index, so that parallel
        workers do not draw the same points."""
        kwargs = {key: value for key, value in self.sampler.items() if key != "type"}
        if kwargs.get("seed") is not None:
            kwargs["seed"] = int(kwargs["seed"]) + 7919 * worker
        if self.sampler["type"] == "tpe":
            kwargs.setdefault("constant_liar", True)   # running trials count as bad: parallel workers spread out
        return SAMPLERS[self.sampler["type"]](**kwargs)

    def definition_hash(self) -> str:
        """12 hex digits of what defines the search (not the pruner, sampler or trial count)."""
        keys = ("experiment", "quick", "fixed", "objective", "direction", "params")
        text = json.dumps({key: self.raw.get(key) for key in keys}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def objective_name(self) -> str:
        obj = self.objective
        return obj if isinstance(obj, str) else f"{obj['reduce']}({obj['metric']})"

    def objective_value(self, summary: dict, metrics: list[dict]) -> float:
        """The trial's objective from its summary or metrics lines; ConfigError if the key is absent,
        ValueError if the value is not a finite number."""
        if isinstance(self.objective, str):
            value = summary
            for part in self.objective.split("."):
                if not isinstance(value, dict) or part not in value:
                    found = sorted(value) if isinstance(value, dict) else type(value).__name__
                    raise ConfigError(f"{self.name}.objective", self.objective,
                                      f"the run's summary has no '{part}' here; it has {found}")
                value = value[part]
            values = [value]
        else:
            values = [line[self.objective["metric"]] for line in metrics if self.objective["metric"] in line]
            if not values:
                raise ConfigError(f"{self.name}.objective.metric", self.objective["metric"],
                                  f"no metrics line has it; the run logged {sorted({k for m in metrics for k in m})}")
        if not all(is_number(v) for v in values):
            raise ValueError(f"objective {self.objective_name()} is not a finite number: {values}")
        return float(REDUCERS["last" if isinstance(self.objective, str) else self.objective["reduce"]](values))


def is_number(value) -> TypeGuard[float]:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _study_vocabulary(module_name: str) -> dict:
    """What a study module's source says it reports: ``summary`` (the literal keys of the dict ``run``
    returns, nested dicts as dicts; None when not a literal), ``prefixes`` (``run.map(..., prefix)``)
    and ``keys`` (every string key of a dict literal). Empty sets where the source does not tell."""
    import importlib

    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))

    def literal(node):
        return {k.value: literal(v) for k, v in zip(node.keys, node.values)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)} if isinstance(node, ast.Dict) else None

    summary = {}
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "run":
            for ret in ast.walk(statement):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                    summary.update(literal(ret.value))
    prefixes, keys = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "map":
            args = [*node.args[3:4], *(k.value for k in node.keywords if k.arg == "prefix")]
            prefixes |= {a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
        if isinstance(node, ast.Dict):
            keys |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return {"summary": {**summary, **dict.fromkeys(EXECUTE_KEYS)} if summary else {}, "prefixes": prefixes,
            "keys": keys}


def check_metric(field_name: str, metric: object, vocabulary: dict) -> None:
    """A metrics key must be ``<prefix>/<key>`` for a prefix the study logs under (when its source tells)."""
    if not isinstance(metric, str) or not metric:
        raise ConfigError(field_name, metric, "name a metrics key, e.g. theory/t4/surface/regret")
    if not vocabulary["prefixes"]:
        return
    prefix, _, key = metric.rpartition("/")
    keys = sorted(vocabulary["keys"] - set(vocabulary["summary"]))
    check(prefix in vocabulary["prefixes"] and key in vocabulary["keys"], field_name, metric,
          f"this study logs metrics <prefix>/<key> with prefix one of {', '.join(sorted(vocabulary['prefixes']))} "
          f"and key one of {', '.join(keys)} (see a run's metrics.jsonl)")


def check_objective(space_name: str, objective, vocabulary: dict) -> str | dict:
    """Validate ``objective`` against the study's vocabulary (as far as its source tells)."""
    field_name = f"{space_name}.objective"
    if isinstance(objective, dict):
        unknown = sorted(set(objective) - {"metric", "reduce"})
        check(not unknown, f"{field_name}.{unknown[0] if unknown else ''}", "(unknown key)", "use metric: and reduce:")
        check_metric(f"{field_name}.metric", objective.get("metric"), vocabulary)
        objective = {"metric": objective["metric"], "reduce": objective.get("reduce", "mean")}
        check_choice(f"{field_name}.reduce", objective["reduce"], tuple(REDUCERS))
        return objective
    check(isinstance(objective, str) and objective != "", field_name, objective,
          "name a summary key (e.g. abstraction_final_regret), or {metric: <metrics key>, reduce: mean}")
    level = vocabulary["summary"]
    for part in objective.split("."):
        if not isinstance(level, dict) or not level:
            break     # not a literal dict in the source: checked on the first trial
        check(part in level, field_name, objective,
              f"the study's summary has {', '.join(sorted(level))} at this level (dotted paths reach nested keys; "
              "or use {metric: <metrics key>, reduce: mean})")
        level = level[part]
    return objective


def _param(space_name: str, name: str, spec, keys: dict) -> Param:
    where = f"{space_name}.params.{name}"
    check(isinstance(spec, dict), where, spec, "must be a mapping like {type: float, low: 0.1, high: 1.0}")
    unknown = sorted(set(spec) - set(PARAM_KEYS))
    check(not unknown, f"{where}.{unknown[0] if unknown else ''}", "(unknown key)",
          f"a param has keys {', '.join(PARAM_KEYS)}")
    key = spec.get("key", name)
    check(key in keys, f"{where}.key" if "key" in spec else f"{space_name}.params", key,
          f"not a key of the experiment; it has {', '.join(keys)} (a new key needs +key=... under fixed:)")
    kind = spec.get("type")
    check_choice(f"{where}.type", kind, ("float", "int", "categorical"))
    is_list = OmegaConf.is_list(keys[key])
    repeat = spec.get("repeat", 1 if is_list else None)
    check(is_list or "repeat" not in spec, f"{where}.repeat", repeat,
          f"'{key}' holds one value, not a list: drop repeat")
    check(repeat is None or (isinstance(repeat, int) and repeat >= 1), f"{where}.repeat", repeat, "must be an int >= 1")
    if kind == "categorical":
        choices = spec.get("choices")
        check(isinstance(choices, list) and len(choices) >= 1 and all(not isinstance(c, (dict, list)) for c in choices),
              f"{where}.choices", choices, "a categorical param needs choices: [a, b, ...] of plain values")
        extra = sorted(set(spec) & {"low", "high", "log", "step"})
        check(not extra, f"{where}.{extra[0] if extra else ''}", spec.get(extra[0]) if extra else None,
              "categorical params take choices only")
        return Param(name, key, kind, choices=tuple(choices), repeat=repeat)
    check("choices" not in spec, f"{where}.choices", spec.get("choices"), "choices are for type: categorical")
    number = int if kind == "int" else (int, float)
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    for bound, value in (("low", low), ("high", high)):
        check(isinstance(value, number) and not isinstance(value, bool), f"{where}.{bound}", value,
              f"a{'n int' if kind == 'int' else ' number'} is needed")
    check(low < high, f"{where}.low", low, f"must be < high ({high})")
    check(isinstance(log, bool), f"{where}.log", log, "must be true or false")
    check(not log or low > 0, f"{where}.low", low, "a log-scaled param needs low > 0 (or log: false)")
    check(step is None or (isinstance(step, number) and not isinstance(step, bool) and step > 0), f"{where}.step",
          step, f"must be a positive {'int' if kind == 'int' else 'number'}")
    check(step is None or not log, f"{where}.step", step, "Optuna cannot combine step with log: drop one")
    return Param(name, key, kind, low=low, high=high, log=log, step=step, repeat=repeat)


def _factory(space_name: str, kind: str, spec: dict | None, registry: dict, default: str) -> dict:
    """The pruner or sampler ``spec`` with its type, checked by constructing it once."""
    spec = {"type": default, **(spec or {})}
    check_choice(f"{space_name}.{kind}.type", spec["type"], tuple(registry))
    accepted = [p for p in inspect.signature(registry[spec["type"]]).parameters if p not in ("self", "args", "kwargs")]
    for key in spec:
        check(key == "type" or key in accepted, f"{space_name}.{kind}.{key}", "(unknown key)",
              f"{registry[spec['type']].__name__} takes {', '.join(accepted) or 'no arguments'}")
    try:
        registry[spec["type"]](**{key: value for key, value in spec.items() if key != "type"})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{space_name}.{kind}", spec, str(error).splitlines()[0]) from None
    return spec


def load_space(name: str) -> Space:
    """Load and validate ``sweeps/<name>_space.yaml`` (``<name>_space`` is accepted too).

    Everything that can be checked without running a trial is: the file, the experiment, every
    param's key, type and bounds, the pruner and sampler, and the objective and intermediate keys
    against what the study's source reports. Raises ConfigError naming the field and the fix.
    """
    if name.endswith(SPACES.suffix) and name not in SPACES.names():
        name = name.removesuffix(SPACES.suffix)
    raw = load_file(SPACES, name, SPACE_KEYS)
    quick, fixed = raw.get("quick", False), list(raw.get("fixed", ()))
    try:
        base = compose_experiment(raw["experiment"], fixed, quick=quick)
    except ConfigError as error:
        raise ConfigError(f"{name}.fixed", fixed, f"{error} (fix that override)") from None
    keys = {key: OmegaConf.select(base, key) for key in flat_keys(base) if not key.startswith("quick.")}
    check(len(raw["params"]) > 0, f"{name}.params", raw["params"], SPACE_KEYS["params"].meaning)
    parsed = tuple(_param(name, str(pname), spec, keys) for pname, spec in raw["params"].items())
    dup = [p.key for p in parsed if [q.key for q in parsed].count(p.key) > 1]
    check(not dup, f"{name}.params", dup[0] if dup else None, "two params set the same experiment key")
    vocabulary = _study_vocabulary(base.study)
    objective = check_objective(name, raw["objective"], vocabulary)
    intermediate = raw.get("intermediate")
    if intermediate is not None:
        check_metric(f"{name}.intermediate", intermediate, vocabulary)
    trials = raw.get("trials", DEFAULT_TRIALS)
    check(trials >= 1, f"{name}.trials", trials, "must be >= 1")
    return Space(
        name=name, experiment=raw["experiment"], quick=quick, fixed=tuple(fixed), objective=objective,
        direction=raw.get("direction", "minimize"), intermediate=intermediate,
        pruner=_factory(name, "pruner", raw.get("pruner"), PRUNERS, "median"),
        sampler=_factory(name, "sampler", raw.get("sampler"), SAMPLERS, "tpe"),
        trials=trials, params=parsed, raw=raw,
    )


def check_bounds(space: Space) -> None:
    """Compose the experiment with every param at its low end, then at its high end, and let the study
    validate both (``prepare``: no work); a ConfigError names the param and the bound."""
    from ra3lab.execute import prepare

    for end in (0, 1):
        values = {param.name: param.bounds()[end] for param in space.params}
        try:
            prepare(space.experiment, space.compose(values))
        except ConfigError as error:
            bound = "high" if end else "low"
            culprit = next((p for p in space.params if p.key == error.field or p.key.startswith(f"{error.field}.")),
                           None)
            where = (f"{space.name}.params.{culprit.name}.{bound}" if culprit else
                     f"{space.name}.params (all at {bound})")
            raise ConfigError(where, error.value, f"the study rejects it: {error.valid}") from None
