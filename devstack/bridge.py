"""Dev-stack stand-in for Eventarc: storage notifications in, CloudEvents out.

fake-gcs-server publishes OBJECT_FINALIZE notifications (JSON_API_V1) to a Pub/Sub topic, as
GCS does. In the cloud, Eventarc turns each into a ``google.cloud.storage.object.v1.finalized``
CloudEvent and delivers it to the function; here this bridge pulls the notifications and
POSTs the same CloudEvent (binary mode) to the function served by functions-framework. A
delivery that fails is nacked, so Pub/Sub redelivers it, as Eventarc retries.

Header values are percent-encoded as the CloudEvents HTTP binding asks (3.1.3.2) and Eventarc
sends them: ``ce-subject`` carries the object name, and a name outside printable ASCII (Unicode,
U+202E, a newline) cannot go into an HTTP header as it is.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from google.cloud import pubsub_v1

log = logging.getLogger(__name__)

EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}


def cloud_event(message: pubsub_v1.subscriber.message.Message | object) -> CloudEvent | None:
    """The CloudEvent Eventarc would deliver for one storage notification (None: not a storage event)."""
    attributes = dict(message.attributes)
    event_type = EVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None or attributes.get("payloadFormat") != "JSON_API_V1":
        return None
    data = json.loads(message.data)
    bucket = attributes["bucketId"]
    return CloudEvent({
        "id": message.message_id,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "type": event_type,
        "subject": f"objects/{attributes['objectId']}",
        "time": attributes.get("eventTime") or data.get("updated"),
        "datacontenttype": "application/json",
    }, data)


# Printable ASCII but for space, '"' and '%' goes as it is; every other character as its UTF-8 bytes, %XX.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def http_request(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """The binary-mode HTTP headers and body of ``event``, header values percent-encoded."""
    headers, body = to_binary(event)
    return {k: quote(v, safe=_HEADER_SAFE) if k.lower().startswith("ce-") else v for k, v in headers.items()}, body


class NotificationBridge:
    def __init__(self, subscription_path: str, function_url: str, *, bucket: str | None = None) -> None:
        self.subscription_path = subscription_path
        self.function_url = function_url
        self.bucket = bucket
        self.delivered = 0
        self._subscriber = pubsub_v1.SubscriberClient()
        self._http = requests.Session()
        self._future = None

    def start(self) -> "NotificationBridge":
        self._future = self._subscriber.subscribe(self.subscription_path, callback=self._on_message)
        return self

    def _on_message(self, message) -> None:
        event = cloud_event(message)
        if event is None or (self.bucket and message.attributes.get("bucketId") != self.bucket):
            message.ack()
            return
        headers, body = http_request(event)
        try:
            response = self._http.post(self.function_url, data=body, headers=headers, timeout=60)
        except requests.RequestException as e:
            log.warning("function unreachable for %s: %s", event["subject"], e)
            message.nack()
            return
        if 200 <= response.status_code < 300:
            self.delivered += 1
            message.ack()
        else:
            log.warning("function answered %s for %s", response.status_code, event["subject"])
            message.nack()

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=10)
            except Exception:  # noqa: BLE001 - a cancelled streaming pull ends with an error by design
                pass
        self._subscriber.close()
        self._http.close()
