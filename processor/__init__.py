"""The processor SDK: consume a processor's frames, run a function on each, publish results.

It talks to the orchestrator only over Kafka, Redis and the REST API, and never imports
the Faust app (app.main, agents, tables).
"""

from processor.client import ProcessorClient
from processor.frame import Frame, ProcessFn, RejectFrame

__all__ = ["Frame", "ProcessFn", "ProcessorClient", "RejectFrame"]
