"""The ``llmvem`` command line (typer + rich)."""
