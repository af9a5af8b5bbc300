"""The paper appendix rebuilt from pinned runs (``ra3lab paper pin|build|check``, ``make paper``).

``pins`` (paper/runs.yaml: which run each piece comes from), ``numbers`` (LaTeX macros read from the pinned
runs' summaries), ``figures`` (drawn from them by :mod:`ra3lab.plots.paper`), ``build`` (render, compile, record,
check).
"""
