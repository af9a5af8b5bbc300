"""What the studies share: building an environment (a family or a world) from its config, seeded generators.
Figures: :mod:`ra3lab.plots.style`."""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig

from ra3lab.errors import ConfigError


def make_env(env: DictConfig, **overrides) -> Any:
    """Instantiate the environment (an option family, a CodeWorld) named by ``env._target_`` with ``overrides`` on
    top of its keys.

    A key the family does not take (e.g. after ``env=star`` in an experiment tuned for chains) is a
    ConfigError listing its parameters; a ConfigError of its constructor surfaces as it is."""
    try:
        return instantiate(env, **overrides)
    except Exception as error:  # Hydra wraps the constructor's own error; surface the ConfigError inside
        cause = error if isinstance(error, ConfigError) else error.__cause__ or error.__context__
        if isinstance(cause, ConfigError):      # a key of the config block is named by its path (env.spec)
            path = env._get_full_key(None)
            named = cause.field in env and cause.field not in overrides and path
            raise ConfigError(f"{path}.{cause.field}" if named else cause.field, cause.value, cause.valid) from None
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if unexpected:
            function = get_method(env._target_)
            takes = ", ".join(inspect.signature(function).parameters)
            raise ConfigError(f"env.{unexpected.group(1)}", "(unknown to this environment)",
                              f"{env._target_} takes {takes}; drop or rename the key (e.g. ~env.{unexpected.group(1)})"
                              ) from None
        raise


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))

