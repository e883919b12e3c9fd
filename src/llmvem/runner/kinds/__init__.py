"""The kinds the runner knows: importing this package registers them (a new kind: a module and a line here)."""

from llmvem.runner.kinds import decoding, evaluations, files, folder, models, networks, stimuli, sweeps, targets, words  # noqa: F401
