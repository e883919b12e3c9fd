"""The experiment runner: a study (YAML: ``stimuli``, ``targets``, ``models``, ``evaluations``) run in fixed
phases, its parts chosen by name from four registries, its results in one long table (:mod:`llmvem.results`).

>>> from llmvem.runner import list_studies
>>> {"demo", "objects92", "doerig-controls"} <= set(list_studies())
True
"""

from llmvem.runner.parts import EVALUATIONS, MODELS, STIMULI, TARGETS
from llmvem.runner.run import run_study
from llmvem.runner.study import Study, list_studies, load_study

__all__ = ["EVALUATIONS", "MODELS", "STIMULI", "TARGETS", "Study", "list_studies", "load_study", "run_study"]
