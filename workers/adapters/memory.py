"""In-memory fakes of the ports, for unit tests and for the one-file API's scratch space."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

from workers.core.errors import NotFound, PreconditionFailed
from workers.core.jobs import now_rfc3339
from workers.core.ports import BlobInfo


class MemoryBlobStore:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], tuple[bytes, int, str | None, str]] = {}
        self._lock = threading.Lock()
        self._generations = itertools.count(1_700_000_000_000_000)
        self.writes: list[tuple[str, str, int | None]] = []

    def put(self, bucket: str, name: str, data: bytes, content_type: str | None = None) -> int:
        """Upload unconditionally (what a user's `gsutil cp` does)."""
        with self._lock:
            generation = next(self._generations)
            self._objects[(bucket, name)] = (data, generation, content_type, now_rfc3339())
            return generation

    def stat(self, bucket: str, name: str) -> BlobInfo | None:
        with self._lock:
            found = self._objects.get((bucket, name))
        if found is None:
            return None
        data, generation, content_type, updated = found
        return BlobInfo(bucket, name, generation, len(data), content_type, updated)

    def read(self, bucket: str, name: str) -> tuple[bytes, int]:
        with self._lock:
            found = self._objects.get((bucket, name))
        if found is None:
            raise NotFound(f"{bucket}/{name} does not exist")
        return found[0], found[1]

    def download(self, bucket: str, name: str, generation: int, dest: Path) -> None:
        data, live = self.read(bucket, name)
        if live != generation:
            raise NotFound(f"{bucket}/{name} generation {generation} is gone")
        dest.write_bytes(data)

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None,
        content_type: str = "application/json",
    ) -> int:
        with self._lock:
            self.writes.append((bucket, name, if_generation_match))
            live = self._objects.get((bucket, name), (b"", 0))[1]
            if if_generation_match is not None and if_generation_match != live:
                raise PreconditionFailed(f"{bucket}/{name}: generation is {live}")
            generation = next(self._generations)
            self._objects[(bucket, name)] = (data, generation, content_type, now_rfc3339())
            return generation

    def delete(self, bucket: str, name: str) -> None:
        with self._lock:
            self._objects.pop((bucket, name), None)

    def list(self, bucket: str, prefix: str = "") -> Iterator[BlobInfo]:
        with self._lock:
            names = sorted(n for b, n in self._objects if b == bucket and n.startswith(prefix))
        for name in names:
            info = self.stat(bucket, name)
            if info is not None:
                yield info


class MemoryBus:
    """Records what was published; delivery is up to the test."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self._ids = itertools.count(1)

    def publish(self, topic: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
        self.messages.append((topic, json.loads(json.dumps(message)), dict(attributes)))
        return str(next(self._ids))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [m for t, m, _ in self.messages if t == topic]
