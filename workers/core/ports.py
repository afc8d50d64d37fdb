"""The ports: blob storage with generations and a message bus (what the handlers need), and
pull access to dead-letter subscriptions (what redrive and status need).

Adapters: ``adapters.local`` (a folder per bucket, in-process bus), ``adapters.memory``
(fakes for unit tests), ``adapters.gcs``, ``adapters.pubsub`` and ``adapters.pubsub_pull``
(Google Cloud).
"""

from __future__ import annotations

import json
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

    def delete(self, bucket: str, name: str) -> None:
        """Remove the live object; nothing happens when it does not exist."""


class Bus(Protocol):
    def publish(self, topic: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
        """Publish one JSON message; returns its id once the bus has accepted it."""


@dataclass(frozen=True)
class DeadLetter:
    """One message leased from a dead-letter subscription."""

    subscription: str
    ack_id: str
    data: bytes
    attributes: dict[str, str]

    def json(self) -> dict | None:
        try:
            body = json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None


class DeadLetterQueue(Protocol):
    """Pull access to dead-letter subscriptions (adapters.pubsub_pull; a fake in tests)."""

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        """Up to ``max_messages`` waiting messages, leased (not acknowledged)."""

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        """Remove the messages for good."""

    def nack(self, subscription: str, ack_ids: list[str]) -> None:
        """Hand the messages back at once, untouched."""
