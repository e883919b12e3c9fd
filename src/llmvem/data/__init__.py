"""The shared data model (stimuli, brain responses, RDMs) and loaders of the real datasets.

>>> from llmvem.data import load_dataset
>>> obj = load_dataset("objects92")  # doctest: +SKIP
>>> obj.rdms["cichy_it"].rdms.shape  # doctest: +SKIP
(15, 92, 92)
"""

from llmvem.data.brain import BrainData, RDMSet
from llmvem.data.datadir import resolve_data_dir
from llmvem.data.datasets import DATASETS, DatasetSpec, check_dataset, dataset_status, load_dataset
from llmvem.data.nsd_shared1000 import NSDShared1000, load_nsd_shared1000
from llmvem.data.objects92 import Objects92, load_objects92
from llmvem.data.stimuli import StimulusSet

__all__ = [
    "DATASETS",
    "BrainData",
    "DatasetSpec",
    "NSDShared1000",
    "Objects92",
    "RDMSet",
    "StimulusSet",
    "check_dataset",
    "dataset_status",
    "load_dataset",
    "load_nsd_shared1000",
    "load_objects92",
    "resolve_data_dir",
]
