"""End-to-end experiments that chain the stages: the built-in demo and the objects92 RSA study.

These orchestrate the stage packages; they hold no analysis code of their own.
"""

from llmvem.pipeline.encoding_demo import run_encoding_demo
from llmvem.pipeline.nsd_objects92 import run_nsd_objects92
from llmvem.pipeline.objects92_rsa import run_objects92_rsa

__all__ = ["run_encoding_demo", "run_nsd_objects92", "run_objects92_rsa"]
