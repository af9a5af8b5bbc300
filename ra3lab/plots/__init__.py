"""The plotting suite: statistics as pure functions (``stats``), kept apart from drawing."""
