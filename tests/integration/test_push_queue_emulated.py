"""A push worker's bounded queue under the Pub/Sub emulator: a push to an instance whose slots and
queue are full is refused (429), and the emulator delivers it again until it is done: nothing
lost, dead-lettered or processed twice. (The emulator was seen to push one message of a subscription at a
time: 8 published at once on 2 slots + 1 waiting met no refusal; so the slot is filled here by a push made
straight to the service.)"""

from __future__ import annotations

import asyncio
import threading
import time

from aiohttp import web

from devstack import emulators
from tests.handlers_factory import make_handlers
from tests.unit.test_service import WAV, FakeStt, upload
from workers.adapters.memory import MemoryBlobStore, MemoryBus
from workers.adapters.pubsub import encode_push
from workers.core.contracts import to_dict
from workers.core.jobs import partial_key
from workers.core.settings import Settings
from workers.entrypoints.http.app import create_app


def _serve(app: web.Application) -> tuple[int, threading.Event]:
    """``app`` on a free port of 127.0.0.1 in a thread of its own, until the event is set."""
    started, stop, port = threading.Event(), threading.Event(), []

    def main() -> None:
        async def run() -> None:
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()

        asyncio.run(run())

    threading.Thread(target=main, daemon=True).start()
    assert started.wait(10), "the service did not start"
    return port[0], stop


def test_a_push_to_a_full_instance_is_refused_and_the_emulators_redelivery_succeeds(pubsub_emulator, unique):
    """One slot, no queue (WORKER_CONCURRENCY 1, WORKER_QUEUE 0): while a job pushed straight to the
    service runs, the emulator's push of another is answered 429; the emulator delivers it again
    after its backoff and it is done once the slot is free. Nothing lost, dead-lettered or done twice."""
    import json
    import urllib.request

    from google.cloud import pubsub_v1

    store, bus = MemoryBlobStore(), MemoryBus()
    stt = FakeStt(delay=2.0)
    running, queued = (upload(store, f"{name}.wav", WAV) for name in ("running", "queued"))
    settings = Settings.from_env({}, push_auth="off", pubsub_emulator_host=pubsub_emulator, project="p",
                                 worker_concurrency=1, worker_queue=0)
    app = create_app(settings, "stt", build=lambda: make_handlers(store, bus, stt=stt))
    statuses: list[tuple[float, int]] = []

    @web.middleware
    async def record(request, handler):
        response = await handler(request)
        if request.path == "/push/job":
            statuses.append((time.monotonic(), response.status))
        return response

    app.middlewares.insert(0, record)
    port, stop = _serve(app)
    url = f"http://127.0.0.1:{port}"
    topic = f"full-{unique}"
    emulators.create_topic(topic)
    emulators.create_topic(f"{topic}-dl")
    emulators.create_subscription(f"{topic}-dl", f"{topic}-dl")
    try:
        deadline = time.monotonic() + 20
        while True:  # the handlers are built off the event loop first
            try:
                if urllib.request.urlopen(f"{url}/healthz").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.05)
        emulators.create_subscription(f"{topic}-push", topic, push_endpoint=f"{url}/push/job",
                                      ack_deadline_seconds=60, dead_letter_topic=f"{topic}-dl",
                                      max_delivery_attempts=20, min_backoff_seconds=0.5, max_backoff_seconds=1)
        first = threading.Thread(target=lambda: urllib.request.urlopen(urllib.request.Request(
            f"{url}/push/job", data=encode_push(to_dict(running)), method="POST")), daemon=True)
        first.start()
        time.sleep(0.3)  # the slot is taken
        publisher = pubsub_v1.PublisherClient()
        publisher.publish(publisher.topic_path(emulators.PROJECT, topic), json.dumps(to_dict(queued)).encode()).result()
        deadline = time.monotonic() + 60
        while store.stat("staging", partial_key(queued.job_id, "stt")) is None:
            assert time.monotonic() < deadline, f"the refused job was never done: {statuses}"
            time.sleep(0.1)
        first.join(10)
    finally:
        stop.set()
    codes = [code for _, code in statuses]
    assert 429 in codes, f"the push to a full instance is refused: {codes}"
    assert codes[-1] == 204 and codes.count(204) == 2, codes
    assert len(stt.windows) == 2, "each job transcribed once"
    assert store.stat("staging", partial_key(running.job_id, "stt")) is not None
    assert not emulators.pull(f"{topic}-dl"), "nothing dead-lettered"
