"""Closed-form predictions of the RA3 theory (pure numpy): regret decomposition, Theorems 3.5 and 3.6,
and the fits that set measurements against them."""
