"""The Frame Buffer v2 processor SDK: consume a processor's frames, run a function on each,
publish results.

It talks to the orchestrator only over Kafka, Redis and the REST API, and imports nothing of
it: the orchestrator imports the wire contracts (``frame_buffer_sdk.models``) from here.
"""

from frame_buffer_sdk.client import ProcessorClient
from frame_buffer_sdk.frame import Frame, ProcessFn, RejectFrame
from frame_buffer_sdk.handlers import AnyProcessFn, BatchItem, BatchProcessFn, Hook, SyncProcessFn
from frame_buffer_sdk.results import ResultsReader
from frame_buffer_sdk.settings import ProcessorSettings, load_processor_settings

__all__ = [
    "AnyProcessFn",
    "BatchItem",
    "BatchProcessFn",
    "Frame",
    "Hook",
    "ProcessFn",
    "ProcessorClient",
    "ProcessorSettings",
    "RejectFrame",
    "ResultsReader",
    "SyncProcessFn",
    "load_processor_settings",
]
