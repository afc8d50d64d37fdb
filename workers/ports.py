"""The two ports the handlers need: blob storage with generations, and a message bus.

Adapters: ``adapters.local`` (a folder per bucket, in-process bus), ``adapters.memory``
(fakes for unit tests), ``adapters.gcs`` and ``adapters.pubsub`` (Google Cloud).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol


@dataclass(frozen=True)
class BlobInfo:
    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None = None
    updated: str | None = None  # RFC 3339


class BlobStore(Protocol):
    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        """Metadata of the live generation, or None when the object does not exist."""

    def read(self, bucket: str, name: str) -> tuple[bytes, int]:
        """(content, generation) of the live object; raises NotFound."""

    def download(self, bucket: str, name: str, generation: int, dest: Path) -> None:
        """Stream exactly ``generation`` of the object to ``dest``; raises NotFound when it is gone
        (its message says what happened to it) and PermanentError when it can never be read."""

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None,
        content_type: str = "application/json",
    ) -> int:
        """Store ``data`` and return its new generation.

        ``if_generation_match=0`` means "only if absent"; a positive value means "only if the
        live generation is that one"; a mismatch raises PreconditionFailed.
        """

    def list(self, bucket: str, prefix: str = "") -> Iterator[BlobInfo]:
        """Every live object under ``prefix``, in name order."""


class Bus(Protocol):
    def publish(self, topic: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
        """Publish one JSON message; returns its id once the bus has accepted it."""
