"""llmvem: vision models and brain encoding models aligned with language.

The pipeline is describe → embed → features → align/train → evaluate (encoding, RSA, decoding) → report; each
stage is a subpackage (``llmvem.describe``, ``llmvem.text``, ``llmvem.vision``, ``llmvem.align``, ``llmvem.brain``,
``llmvem.report``) over a shared data model (``llmvem.data``) and artifact store (``llmvem.store``).

Heavy libraries (torch, transformers) are imported only by the functions that need them.
"""

from llmvem._version import __version__

__all__ = ["__version__"]
