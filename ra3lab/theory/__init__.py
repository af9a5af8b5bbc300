"""Closed-form predictions of the RA3 theory (pure numpy): regret decomposition, Theorems 3.5 and 3.6.
The fits that set measurements against them live in :mod:`ra3lab.stats`."""
