"""Pull access to Pub/Sub subscriptions for operations (dead-letter inspection and redrive).

Synchronous pull with ``return_immediately`` semantics kept short by a small timeout: an
operator's command should answer at once when a subscription is empty. With
PUBSUB_EMULATOR_HOST set, the client library talks to the emulator.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from workers.adapters.google_errors import google_errors
from workers.core.errors import ConfigError, TransientError
from workers.core.ports import DeadLetter

PULL_TIMEOUT_SECONDS = 10.0


class PubSubDeadLetters:
    def __init__(self, project: str, subscriber: pubsub_v1.SubscriberClient | None = None) -> None:
        if not project:
            raise ConfigError("GOOGLE_CLOUD_PROJECT must be set to read dead-letter subscriptions")
        self.project = project
        self._subscriber = subscriber or pubsub_v1.SubscriberClient()

    def path(self, subscription: str) -> str:
        if subscription.startswith("projects/"):
            return subscription
        return self._subscriber.subscription_path(self.project, subscription)

    def pull(self, subscription: str, max_messages: int) -> list[DeadLetter]:
        path = self.path(subscription)
        with google_errors(f"pull {path}", missing=ConfigError(f"subscription {path} does not exist"),
                           needs="roles/pubsub.subscriber", malformed=TransientError):
            try:
                response = self._subscriber.pull(
                    request={"subscription": path, "max_messages": max_messages, "return_immediately": True},
                    timeout=PULL_TIMEOUT_SECONDS,
                )
            except gexc.DeadlineExceeded:
                return []  # nothing came in time: an empty pull
        return [DeadLetter(subscription, m.ack_id, bytes(m.message.data), dict(m.message.attributes))
                for m in response.received_messages]

    def ack(self, subscription: str, ack_ids: list[str]) -> None:
        self._subscriber.acknowledge(request={"subscription": self.path(subscription), "ack_ids": ack_ids})

    def nack(self, subscription: str, ack_ids: list[str]) -> None:
        self._subscriber.modify_ack_deadline(request={
            "subscription": self.path(subscription), "ack_ids": ack_ids, "ack_deadline_seconds": 0,
        })

    def close(self) -> None:
        self._subscriber.close()
