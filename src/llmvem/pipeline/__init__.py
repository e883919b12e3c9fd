"""End-to-end experiments that chain the stages: the built-in demo, the objects92 RSA study, NSD → objects92 and
fine-tuning on your own image folder.

These orchestrate the stage packages; they hold no analysis code of their own.
"""

from llmvem.pipeline.encoding_demo import run_encoding_demo
from llmvem.pipeline.finetune_folder import run_finetune_folder
from llmvem.pipeline.nsd_objects92 import run_nsd_objects92
from llmvem.pipeline.objects92_rsa import run_objects92_rsa

__all__ = ["run_encoding_demo", "run_finetune_folder", "run_nsd_objects92", "run_objects92_rsa"]
