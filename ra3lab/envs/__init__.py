"""Task families (chain, star, random_dense) and the gymnasium view of them, ``gym.make("ra3lab/OptionMDP-v0")``."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from ra3lab.envs import annuity, chain, random_dense, star, vocab  # modules: ra3lab.envs.chain.chain stays importable
from ra3lab.envs.family import OptionFamily

FAMILIES: dict[str, Callable[..., OptionFamily]] = {
    "chain": chain.chain, "star": star.star, "random_dense": random_dense.random_dense, "vocab": vocab.vocab,
    "annuity": annuity.annuity}
ENV_ID = "ra3lab/OptionMDP-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="ra3lab.envs.option_env:OptionMDPEnv")
