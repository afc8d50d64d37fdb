"""What the Pub/Sub emulator does with failing pushes, measured: the dev stack's delivery
settings (devstack.stack.DEV_STACK_DELIVERY) are chosen from this, so a new emulator
that behaves otherwise fails here first."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack import emulators


def test_a_failing_push_is_retried_within_seconds_and_dead_lettered_after_the_attempts(
        pubsub_emulator, unique):
    pushes: list[float] = []

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            pushes.append(time.monotonic())
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    topic = f"pace-{unique}"
    emulators.create_topic(topic)
    emulators.create_topic(f"{topic}-dl")
    emulators.create_subscription(f"{topic}-dl", f"{topic}-dl")
    emulators.create_subscription(f"{topic}-push", topic, push_endpoint=f"http://127.0.0.1:{server.server_port}/",
                                  ack_deadline_seconds=600, dead_letter_topic=f"{topic}-dl", max_delivery_attempts=5,
                                  min_backoff_seconds=1, max_backoff_seconds=10)
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    publisher.publish(publisher.topic_path(emulators.PROJECT, topic), b"{}").result()
    try:
        deadline, dead = time.monotonic() + 60, []
        while not dead:
            assert time.monotonic() < deadline, f"not dead-lettered after {len(pushes)} pushes"
            dead = emulators.pull(f"{topic}-dl")
            time.sleep(0.5)
    finally:
        server.shutdown()
    gaps = [b - a for a, b in zip(pushes, pushes[1:])]
    assert len(pushes) == 5, "dead-lettered after max_delivery_attempts failed pushes"
    assert max(gaps) < 6, f"retried after {gaps} s: a 1-10 s backoff does not grow to 10 s"
