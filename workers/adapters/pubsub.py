"""Google Cloud Pub/Sub adapter of the Bus port, plus the push-envelope decoder.

``publish`` blocks until Pub/Sub has accepted the message (a handler announces a partial
only after storing it, and must know the announcement went out before it answers 2xx).
The publisher batches: many small publishes from concurrent handlers (or from a backfill)
share requests. With PUBSUB_EMULATOR_HOST set, the client library talks to the emulator.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Mapping

from google.cloud import pubsub_v1

from workers.adapters.google_errors import google_errors
from workers.core.errors import ConfigError, InvalidMessage, TransientError

log = logging.getLogger(__name__)

DEFAULT_BATCH = pubsub_v1.types.BatchSettings(max_messages=100, max_bytes=1_000_000, max_latency=0.01)
PUBLISH_TIMEOUT_SECONDS = 60.0


class PubSubBus:
    def __init__(
        self,
        project: str,
        *,
        batch_settings: pubsub_v1.types.BatchSettings = DEFAULT_BATCH,
        publisher: pubsub_v1.PublisherClient | None = None,
        timeout: float = PUBLISH_TIMEOUT_SECONDS,
    ) -> None:
        if not project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT must be set to publish to Pub/Sub")
        self.project = project
        self._publisher = publisher or pubsub_v1.PublisherClient(batch_settings=batch_settings)
        self._timeout = timeout
        self._paths: dict[str, str] = {}
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        with self._lock:
            if topic not in self._paths:
                self._paths[topic] = topic if topic.startswith("projects/") else self._publisher.topic_path(
                    self.project, topic
                )
            return self._paths[topic]

    def publish(self, topic: str, message: Mapping[str, Any], attributes: Mapping[str, str]) -> str:
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        path = self.topic_path(topic)
        # A missing topic is a deployment fault a fix resolves: transient, so nothing is lost.
        with google_errors(f"publish to {path}", missing=TransientError(f"topic {path} does not exist"),
                           needs="roles/pubsub.publisher", malformed=TransientError):
            future = self._publisher.publish(path, data, **{k: str(v) for k, v in attributes.items()})
            message_id = future.result(timeout=self._timeout)
        return message_id

    def close(self) -> None:
        self._publisher.stop()


@dataclass(frozen=True)
class PushMessage:
    """One message from a Pub/Sub push request."""

    data: dict[str, Any]
    attributes: dict[str, str]
    message_id: str
    subscription: str
    delivery_attempt: int | None


def decode_push(body: bytes) -> PushMessage:
    """Parse the standard push envelope; raises InvalidMessage on anything malformed.

    ``{"message": {"data": base64(JSON), "attributes": {...}, "messageId": ...},
    "subscription": ..., "deliveryAttempt": n}``
    """
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidMessage(f"push body is not JSON: {type(e).__name__}: {e}") from e
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise InvalidMessage("push body has no 'message' object")
    message = envelope["message"]
    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise InvalidMessage("push message has no data")
    try:
        data = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidMessage(f"push message data is not base64-encoded JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidMessage("push message data is not a JSON object")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidMessage("push message attributes are not an object")
    attempt = str(envelope.get("deliveryAttempt"))
    return PushMessage(
        data=data,
        attributes={str(k): str(v) for k, v in attributes.items()},
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        subscription=str(envelope.get("subscription") or ""),
        # Only logged: a value that is no small count is dropped, not allowed to fail the message.
        delivery_attempt=int(attempt) if attempt.isascii() and attempt.isdigit() and len(attempt) <= 9 else None,
    )


def encode_push(data: Mapping[str, Any], attributes: Mapping[str, str] | None = None, *,
                message_id: str = "1", subscription: str = "projects/p/subscriptions/s") -> bytes:
    """The envelope Pub/Sub would push for ``data`` (tests and tools build requests with it)."""
    payload = base64.b64encode(json.dumps(data).encode()).decode()
    return json.dumps({
        "message": {"data": payload, "attributes": dict(attributes or {}), "messageId": message_id},
        "subscription": subscription,
    }).encode()
