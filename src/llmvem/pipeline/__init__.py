"""The experiments' old entry points: ``run_encoding_demo``, ``run_objects92_rsa``, ``run_nsd_objects92`` (its
visual-words variant included) and ``run_finetune_folder`` are thin wrappers over the studies of the runner
(:mod:`llmvem.runner`; an old config is translated with a warning); ``evaluate_files`` builds the studies of
``llmvem evaluate encoding|rsa|decode`` (docs/decisions/0013-runner.md).
"""

from llmvem.pipeline.encoding_demo import run_encoding_demo
from llmvem.pipeline.finetune_folder import run_finetune_folder
from llmvem.pipeline.nsd_objects92 import run_nsd_objects92
from llmvem.pipeline.objects92_rsa import run_objects92_rsa

__all__ = ["run_encoding_demo", "run_finetune_folder", "run_nsd_objects92", "run_objects92_rsa"]
