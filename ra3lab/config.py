"""Experiment configs: Hydra's compose API over the repository's ``experiments/`` and ``envs/`` folders.

An experiment is ``experiments/<name>.yaml`` (package ``_global_``); it pulls one environment from
the ``envs`` group into the key ``env``. Overrides use Hydra's grammar (``key=value``,
``+new_key=value``, ``~key``); ``env=<name>`` is shorthand for Hydra's ``envs@env=<name>``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from ra3lab.errors import ConfigError, check, check_choice


def project_root() -> Path:
    """The folder holding ``experiments/`` and ``envs/``: $RA3LAB_ROOT, else the checkout of this package."""
    root = Path(os.environ.get("RA3LAB_ROOT", Path(__file__).resolve().parent.parent))
    if not (root / "experiments").is_dir():
        raise ConfigError("RA3LAB_ROOT", str(root),
                          "must be a folder with experiments/ and envs/ (the ra3lab checkout)")
    return root


def names(group: str) -> list[str]:
    """The config names available in a folder of the project root (``experiments``, ``envs``, ...)."""
    return sorted(path.stem for path in (project_root() / group).glob("*.yaml"))


def _hydra_override(override: str) -> str:
    return re.sub(r"^env=", "envs@env=", override)


def flat_keys(config: DictConfig, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf value in ``config``."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key!s}"
        keys.extend(flat_keys(value, f"{path}.") if isinstance(value, DictConfig) else [path])
    return keys


def compose_experiment(name: str, overrides: Sequence[str] = (), quick: bool = False) -> DictConfig:
    """The resolved config of experiment ``name`` with ``overrides`` applied.

    quick: apply first the overrides the experiment lists under ``quick:`` (a small, fast scale).
    Raises ConfigError naming the valid experiments, environments or keys when one is unknown, a sweep
    (``range(...)``, ``a,b``) where one value is expected, and the expected type when a value's type
    differs from the experiment's own (see :func:`check_types`).
    """
    check_choice("experiment", name, names("experiments"))
    return _compose_point(name, list(overrides), quick, {})


def compose_points(name: str, points: list[list[str]], quick: bool = False) -> list[DictConfig]:
    """The configs of experiment ``name`` under each override list of ``points``, as
    :func:`compose_experiment` gives them, fast: Hydra composes once per distinct set of
    config-group overrides (``env=...``) and applies each point's value overrides with Hydra's own
    override machinery (about 1 ms a point instead of about 100 ms). An error names its point."""
    check_choice("experiment", name, names("experiments"))
    composed: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}
    configs = []
    for overrides in points:
        try:
            configs.append(_compose_point(name, list(overrides), quick, composed))
        except ConfigError as error:
            raise _in_point(error, overrides) from None
    return configs


def _compose_point(name: str, overrides: list[str], quick: bool,
                   composed: dict[tuple[str, ...], tuple[DictConfig, DictConfig]]) -> DictConfig:
    """One point: the composition of its group overrides (cached in ``composed``), a copy with its
    value overrides applied, resolved and type-checked against that composition."""
    parsed = _parse(name, overrides)
    groups = tuple(_line(o) for o in parsed if o.package is not None or (project_root() / o.key_or_group).is_dir())
    if groups not in composed:
        config = _compose(name, (quick_overrides(name) if quick else []) + list(groups))
        resolved = copy.deepcopy(config)
        OmegaConf.resolve(resolved)
        composed[groups] = config, resolved
    defaults, resolved_defaults = composed[groups]
    config = copy.deepcopy(defaults)
    try:
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.input_line not in groups], config)
    except HydraException as error:
        raise _explain(name, error) from None
    OmegaConf.resolve(config)
    check_types(resolved_defaults, config)
    return one_name_as_list(resolved_defaults, config)


def _compose(name: str, overrides: list[str]) -> DictConfig:
    """Hydra's composition of ``experiments/<name>.yaml`` under ``overrides``, unresolved."""
    try:
        with initialize_config_dir(config_dir=str(project_root()), version_base="1.3"):
            return compose(config_name=f"experiments/{name}", overrides=[_hydra_override(o) for o in overrides])
    except HydraException as error:
        raise _explain(name, error) from None


@functools.cache
def _override_parser() -> OverridesParser:
    return OverridesParser.create()


def _parse(name: str, overrides: list[str]) -> list[Override]:
    """``overrides`` parsed by Hydra's grammar; a sweep (``range(0,5)``, ``a,b``, ``choice(...)``) is a
    ConfigError: a config takes one value per key."""
    try:
        parsed = _override_parser().parse_overrides([_hydra_override(o) for o in overrides])
    except HydraException as error:
        raise _explain(name, error) from None
    for override in parsed:
        key, _, value = _line(override).partition("=")
        check(not override.is_sweep_override(), key.lstrip("+~"), value,
              "a sweep runs one config per value: give one value (a list is written [0,1,2]), "
              "or launch the values with `ra3lab sweep`")
    return parsed


def _line(override: Override) -> str:
    """The text an override was parsed from (always set by the parser)."""
    assert override.input_line is not None, "a parsed override keeps its input line"
    return override.input_line


KINDS = {bool: "a bool (true or false)", int: "an integer", float: "a number", str: "a string", list: "a list",
         dict: "a mapping"}


def _kind(value: object) -> type | None:
    """The entry of KINDS that ``value`` is an instance of (bool before int); None for None."""
    return next((kind for kind in KINDS if isinstance(value, kind)), None)


def _item_prototype(default: list) -> object | None:
    """The first item of a non-empty list whose items are all of one kind (what a new item must be)."""
    return default[0] if default and len({_kind(item) for item in default}) == 1 else None


def _fits(default: object, value: object) -> bool:
    """Whether ``value`` has ``default``'s type: same kind (an int for a float too), list items like the
    default's items, mappings key by key, one name for a list of names (``rule=top_k``); None on either
    side always fits."""
    if default is None or value is None:
        return True
    if isinstance(default, dict) and isinstance(value, dict):
        return all(_fits(default[key], value[key]) for key in default if key in value)
    if isinstance(default, list):
        prototype = _item_prototype(default)
        if isinstance(value, str):
            return isinstance(prototype, str)
        return isinstance(value, list) and all(_fits(prototype, item) for item in value)
    expected, given = _kind(default), _kind(value)
    return expected is given or (expected is float and given is int)


def _expected(default: object) -> str:
    prototype = _item_prototype(default) if isinstance(default, list) else None
    if prototype is not None:
        return f"a list whose items are each {_expected(prototype)}"
    kind = _kind(default)
    assert kind is not None, "None fits every value, so it is never the expected type"
    return KINDS[kind]


def check_types(defaults: DictConfig, config: DictConfig) -> None:
    """Raise ConfigError at the first key whose value in ``config`` has another type than in
    ``defaults`` (the experiment composed before value overrides): an integer key takes an integer, a
    number key an integer or float, a list key a list of items like its own (a list of names also takes
    one name). None is always accepted
    (the study validates it); keys new to ``config`` (``+key=``) or removed (``~key``) are not checked."""
    def mismatches(default, value, path):
        if isinstance(default, dict) and isinstance(value, dict):
            for key in (key for key in default if key in value):
                yield from mismatches(default[key], value[key], f"{path}{key}.")
        elif not _fits(default, value):
            yield path.removesuffix("."), default, value

    for field, default, value in mismatches(OmegaConf.to_container(defaults), OmegaConf.to_container(config), ""):
        scalar_for_list = isinstance(default, list) and _kind(value) in (int, float, str)
        hint = f"; one value is written {field}=[{value}]" if scalar_for_list else ""
        raise ConfigError(field, value, f"must be {_expected(default)}, like its default {default!r}{hint}")


def one_name_as_list(defaults: DictConfig, config: DictConfig) -> DictConfig:
    """``config`` with one name given for a list of names (``inits=ntp``) made that list (``[ntp]``), so a
    study iterates over names, never over a name's letters."""
    def names_given_alone(default, value, path):
        if isinstance(default, dict) and isinstance(value, dict):
            for key in (key for key in default if key in value):
                yield from names_given_alone(default[key], value[key], f"{path}{key}.")
        elif isinstance(default, list) and isinstance(_item_prototype(default), str) and isinstance(value, str):
            yield path.removesuffix("."), value

    found = list(names_given_alone(OmegaConf.to_container(defaults), OmegaConf.to_container(config), ""))
    for path, name in found:
        OmegaConf.update(config, path, [name], merge=False)
    return config


def _in_point(error: ConfigError, overrides: list[str]) -> ConfigError:
    return ConfigError(error.field, error.value, f"{error.valid} (in the point: {' '.join(overrides)})")


def quick_overrides(name: str) -> list[str]:
    """The overrides experiment ``name`` lists under ``quick:``, in Hydra's grammar."""
    quick = compose_experiment(name).get("quick") or {}
    return [f"{key}={json.dumps(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)}"
            for key, value in quick.items()]


def _explain(name: str, error: HydraException) -> ConfigError:
    """Turn Hydra's composition error into one that lists what would have been valid."""
    text = str(error)
    unknown_key = re.search(r"Could not override '([^']+)'", text)
    if unknown_key:
        keys = flat_keys(compose_experiment(name))
        return ConfigError(unknown_key.group(1), "(unknown key)", f"experiment '{name}' has keys: {', '.join(keys)}"
                           f" (add a new key with +{unknown_key.group(1)}=...)")
    missing_env = re.search(r"Could not find 'envs/([^']+)'", text)
    if missing_env:
        return ConfigError("env", missing_env.group(1), f"choose one of {', '.join(names('envs'))}")
    return ConfigError("overrides", text.splitlines()[0], "use Hydra's override grammar: key=value, +key=value, ~key")
