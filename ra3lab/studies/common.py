"""What the studies share: building a family from its config, seeded generators. Figures: :mod:`ra3lab.plots.style`."""

from __future__ import annotations

import inspect
import re

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig

from ra3lab.envs.family import OptionFamily
from ra3lab.errors import ConfigError


def make_family(env: DictConfig, **overrides) -> OptionFamily:
    """Instantiate the family named by ``env._target_`` with ``overrides`` on top of its keys.

    A key the family does not take (e.g. after ``env=star`` in an experiment tuned for chains) is a
    ConfigError listing the family's parameters."""
    try:
        return instantiate(env, **overrides)
    except ConfigError:
        raise
    except Exception as error:  # Hydra wraps the constructor's own error; surface the ConfigError inside
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
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

