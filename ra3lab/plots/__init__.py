"""The plotting suite: figures and tables drawn from results; their statistics live in :mod:`ra3lab.stats`."""
