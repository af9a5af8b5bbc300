"""ra3lab: a toolkit for studying how mid-training shapes reinforcement learning (the RA3 method)."""

__version__ = "0.1.0"
