"""One module per theory claim. Each provides ``validate(config)`` (raises ConfigError before any
work) and ``run(config, run) -> summary``; the YAML in ``experiments/`` names the module."""
