"""The embedded default's wiring, as values: the folders that stand for buckets, the in-process bus and the handlers
subscribed to it (the composition root builds it: ``Root.local(...).local_stack()``)."""

from __future__ import annotations

from dataclasses import dataclass

from workers.adapters.local import LocalBlobStore, LocalBus
from workers.core.jobs import Buckets
from workers.processing.handlers import Handlers

@dataclass
class LocalStack:
    handlers: Handlers
    store: LocalBlobStore
    bus: LocalBus
    buckets: Buckets
    jobs_topic: str

    @property
    def inbox_bucket(self) -> str:
        return self.buckets.inbox

    def close(self) -> None:
        self.bus.close()
