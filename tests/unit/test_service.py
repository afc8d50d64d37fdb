"""The web layer over in-memory ports: outcome → status code, envelopes, readiness, direct endpoints."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.audio_factory import encode, png_bytes, tone
from workers.adapters.memory import MemoryBlobStore, MemoryBus
from workers.adapters.pubsub import encode_push
from workers.core.contracts import Engine, EmotionWindow, PartialReady, Segment, Word, to_dict
from workers.core.engines import EmotionTrack
from workers.core.engines import Transcript
from workers.core.errors import ConfigError, TransientError
from workers.core.jobs import make_job, make_job_id, partial_key, result_key
from tests.handlers_factory import make_handlers
from workers.entrypoints.http.app import create_app
from workers.entrypoints.http.bodies import PUSH_MAX_BYTES
from workers.core.settings import Settings

EMULATED = Settings.from_env({}, push_auth="off", pubsub_emulator_host="127.0.0.1:1", project="p")


class FakeStt:
    engine = Engine("fake-stt", "fake", "0", True)

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.windows: list[tuple[float, float]] = []

    def transcribe(self, audio: np.ndarray) -> Transcript:
        t0 = time.time()
        time.sleep(self.delay)
        self.windows.append((t0, time.time()))
        d = len(audio) / 16000
        return Transcript("en", 0.9, d, [Segment(0, 0.1, d - 0.1, "hello.", -0.1, 0.0,
                                                 [Word(0.1, d - 0.1, " hello.", 0.9)])])


class FakeSer:
    engine = Engine("fake-ser", "fake", "0", True)

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def classify(self, audio: np.ndarray) -> EmotionTrack:
        time.sleep(self.delay)
        d = len(audio) / 16000
        return EmotionTrack(3.0, 1.5, ["happy", "sad"], [EmotionWindow(0.0, d, [0.8, 0.2])], d)


def serve(app, scenario):
    async def main():
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await wait_ready(client)
            return await scenario(client)

    return asyncio.run(main())


async def wait_ready(client: TestClient, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get("/healthz")).status != 200:
        assert time.monotonic() < deadline, "service never became ready"
        await asyncio.sleep(0.02)


def upload(store: MemoryBlobStore, name: str, data: bytes):
    generation = store.put("inbox", name, data)
    return make_job(bucket="inbox", name=name, generation=generation, size=len(data), content_type=None,
                    source="upload")


WAV = encode(tone(2.0))


def test_stt_push_stores_the_partial_announces_it_and_a_redelivery_is_a_duplicate():
    store, bus = MemoryBlobStore(), MemoryBus()
    job = upload(store, "a.wav", WAV)
    app = create_app(EMULATED, "stt", build=lambda: make_handlers(store, bus, stt=FakeStt()))

    async def scenario(client):
        first = await client.post("/push/job", data=encode_push(to_dict(job)))
        second = await client.post("/push/job", data=encode_push(to_dict(job)))
        return first.status, first.headers["X-Outcome"], second.status, second.headers["X-Outcome"]

    assert serve(app, scenario) == (204, "done", 204, "duplicate")
    assert store.stat("staging", partial_key(job.job_id, "stt")) is not None
    assert [m["kind"] for m in bus.on("partials")] == ["stt", "stt"]


def test_bad_audio_is_recorded_as_a_failed_partial_and_acknowledged():
    store = MemoryBlobStore()
    job = upload(store, "picture.wav", png_bytes())
    app = create_app(EMULATED, "ser", build=lambda: make_handlers(store, ser=FakeSer()))

    async def scenario(client):
        r = await client.post("/push/job", data=encode_push(to_dict(job)))
        return r.status, r.headers["X-Outcome"]

    assert serve(app, scenario) == (204, "failed")
    partial = json.loads(store.read("staging", partial_key(job.job_id, "ser"))[0])
    assert partial["status"] == "failed" and partial["error"]["code"]


DEEP = b"[" * 100_000 + b"]" * 100_000


def envelope_of(data: bytes) -> bytes:
    """A push envelope whose message data is ``data``, whatever it holds."""
    return json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": "1"},
                       "subscription": "s"}).encode()


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"subscription": "s"}',
    b'{"message": {"data": "!!!not base64"}}',
    encode_push({"job_id": "x"}),  # not a job message
    encode_push({"job_id": "x", "unexpected": 1}),
    DEEP,  # an envelope nested deeper than the parser goes
    envelope_of(DEEP),  # message data nested as deep
])
def test_a_malformed_push_is_acknowledged_as_invalid_and_nothing_is_written(body):
    store, bus = MemoryBlobStore(), MemoryBus()
    app = create_app(EMULATED, "stt", build=lambda: make_handlers(store, bus, stt=FakeStt()))

    async def scenario(client):
        r = await client.post("/push/job", data=body)
        return r.status, r.headers.get("X-Outcome")

    # Pub/Sub takes any other status as a nack and redelivers until the dead-letter topic.
    assert serve(app, scenario) == (204, "invalid")
    assert list(store.list("staging")) == [] and bus.messages == []


def test_a_job_whose_id_is_not_that_of_the_object_it_names_is_refused_and_nothing_is_written():
    store, bus = MemoryBlobStore(), MemoryBus()
    victim = upload(store, "someone-else.flac", WAV)
    workers = make_handlers(store, bus, stt=FakeStt(), ser=FakeSer())
    workers.stt(victim)
    workers.ser(victim)
    mine = upload(store, "mine.wav", WAV)
    bus.messages.clear()
    # The joiner asked to file the victim's partials under a name of the sender's choosing ...
    hijack = PartialReady(dataclasses.replace(victim, name="hijack/someone-else.flac"), "stt", "ok", "staging",
                          partial_key(victim.job_id, "stt"))
    # ... and STT asked to process another object under an id whose partial exists.
    reused_id = dataclasses.replace(mine, job_id=victim.job_id)

    async def push(client, path, message):
        r = await client.post(path, data=encode_push(to_dict(message)))
        return r.status, r.headers.get("X-Outcome")

    joiner = create_app(EMULATED, "joiner", build=lambda: make_handlers(store, bus))
    stt = create_app(EMULATED, "stt", build=lambda: make_handlers(store, bus, stt=FakeStt()))
    assert serve(joiner, lambda c: push(c, "/push/partial", hijack)) == (204, "invalid")
    assert serve(stt, lambda c: push(c, "/push/job", reused_id)) == (204, "invalid")
    assert list(store.list("results")) == []
    assert store.stat("staging", partial_key(mine.job_id, "stt")) is None and bus.messages == []


def job_dict(**changes) -> dict:
    """A job message as a dict, its id recomputed unless ``job_id`` is among the changes."""
    job = to_dict(make_job(bucket="inbox", name="a.wav", generation=5, size=1, content_type=None, source="upload"))
    job.update(changes)
    if "job_id" not in changes:
        try:
            job["job_id"] = make_job_id(job["bucket"], job["name"], job["generation"])
        except (UnicodeEncodeError, ValueError):
            pass
    return job


@pytest.mark.parametrize("job", [
    job_dict(bucket=""),
    job_dict(name=""),
    job_dict(name="calls/\ud800.wav"),  # a lone surrogate: no object can have that name
    job_dict(name="x" * 5000),  # over GCS's 1024 bytes
    job_dict(generation=0),
    job_dict(generation=-3),
    job_dict(generation=2**64),
])
def test_a_job_that_cannot_name_an_object_is_acknowledged_and_nothing_is_written(job):
    store, bus = MemoryBlobStore(), MemoryBus()
    app = create_app(EMULATED, "ser", build=lambda: make_handlers(store, bus, ser=FakeSer()))

    async def scenario(client):
        r = await client.post("/push/job", data=encode_push(job))
        return r.status, r.headers.get("X-Outcome")

    assert serve(app, scenario) == (204, "invalid")
    assert list(store.list("staging")) == [] and bus.messages == []


def test_a_delivery_attempt_that_is_no_count_does_not_fail_the_message():
    store = MemoryBlobStore()
    job = upload(store, "a.wav", WAV)
    envelope = json.loads(encode_push(to_dict(job)))
    envelope["deliveryAttempt"] = "9" * 5000
    app = create_app(EMULATED, "stt", build=lambda: make_handlers(store, stt=FakeStt()))

    async def scenario(client):
        r = await client.post("/push/job", data=json.dumps(envelope))
        return r.status, r.headers.get("X-Outcome")

    assert serve(app, scenario) == (204, "done")


class FlakyStore(MemoryBlobStore):
    def download(self, *args, **kwargs):
        raise TransientError("storage is having a bad day")


def test_transient_failure_is_a_500_so_pubsub_retries():
    store = FlakyStore()
    job = upload(store, "a.wav", WAV)
    app = create_app(EMULATED, "stt", build=lambda: make_handlers(store, stt=FakeStt()))

    async def scenario(client):
        r = await client.post("/push/job", data=encode_push(to_dict(job)))
        return r.status, (await r.json())["error"]["code"]

    assert serve(app, scenario) == (500, "transient")


def test_unexpected_exception_is_a_500_too():
    class Broken(FakeStt):
        def transcribe(self, audio):
            raise RuntimeError("bug")

    store = MemoryBlobStore()
    job = upload(store, "a.wav", WAV)
    app = create_app(EMULATED, "stt", build=lambda: make_handlers(store, stt=Broken()))

    async def scenario(client):
        return (await client.post("/push/job", data=encode_push(to_dict(job)))).status

    assert serve(app, scenario) == 500


def test_healthz_and_push_answer_503_until_the_model_is_loaded():
    loaded = threading.Event()

    def slow_build():
        loaded.wait(10)
        return make_handlers(stt=FakeStt())

    app = create_app(EMULATED, "stt", build=slow_build)
    job = upload(MemoryBlobStore(), "a.wav", WAV)

    async def main():
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            before = (await client.get("/healthz")).status
            push = (await client.post("/push/job", data=encode_push(to_dict(job)))).status
            loaded.set()
            await wait_ready(client)
            return before, push

    assert asyncio.run(main()) == (503, 503)


def test_a_model_that_fails_to_load_makes_healthz_fail_and_is_reported():
    errors = []

    def broken_build():
        raise ConfigError("no model at /nowhere")

    app = create_app(EMULATED, "stt", build=broken_build, on_load_error=errors.append)

    async def main():
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for _ in range(200):
                r = await client.get("/healthz")
                if r.status != 503:
                    return r.status
                await asyncio.sleep(0.01)

    assert asyncio.run(main()) == 500
    assert len(errors) == 1


def test_joiner_writes_one_result_when_both_partials_exist():
    store, bus = MemoryBlobStore(), MemoryBus()
    job = upload(store, "call.wav", WAV)
    workers = make_handlers(store, bus, stt=FakeStt(), ser=FakeSer())
    workers.stt(job)
    workers.ser(job)
    app = create_app(EMULATED, "joiner", build=lambda: make_handlers(store, bus))
    announcements = [encode_push(m) for m in bus.on("partials")]

    async def scenario(client):
        outcomes = []
        for body in announcements * 3:
            r = await client.post("/push/partial", data=body)
            outcomes.append((r.status, r.headers["X-Outcome"]))
        return outcomes

    outcomes = serve(app, scenario)
    assert {s for s, _ in outcomes} == {204}
    assert [o for _, o in outcomes].count("done") == 1
    assert json.loads(store.read("results", result_key("call.wav"))[0])["status"] == "ok"


def test_joiner_waits_while_a_partial_is_missing():
    store, bus = MemoryBlobStore(), MemoryBus()
    job = upload(store, "call.wav", WAV)
    make_handlers(store, bus, stt=FakeStt()).stt(job)
    app = create_app(EMULATED, "joiner", build=lambda: make_handlers(store, bus))
    ready = PartialReady(job, "stt", "ok", "staging", partial_key(job.job_id, "stt"))

    async def scenario(client):
        r = await client.post("/push/partial", data=encode_push(to_dict(ready)))
        return r.status, r.headers["X-Outcome"]

    assert serve(app, scenario) == (204, "waiting")
    assert store.stat("results", result_key("call.wav")) is None


def test_direct_transcribe_returns_the_partial_and_bad_input_gets_a_clear_4xx():
    settings = EMULATED.replace(max_request_bytes=len(WAV) + 10)
    app = create_app(settings, "stt", build=lambda: make_handlers(stt=FakeStt()))

    async def scenario(client):
        ok = await client.post("/v1/transcribe", data=WAV, headers={"Content-Type": "audio/wav"})
        bad = await client.post("/v1/transcribe", data=png_bytes())
        empty = await client.post("/v1/transcribe", data=b"")
        big = await client.post("/v1/transcribe", data=WAV + b"x" * 100)
        wrong_route = await client.post("/v1/emotions", data=WAV)
        return (ok.status, await ok.json(), bad.status, await bad.json(), empty.status, big.status,
                wrong_route.status)

    ok, partial, bad, failed, empty, big, wrong_route = serve(app, scenario)
    assert ok == 200 and partial["status"] == "ok" and partial["segments"][0]["text"] == "hello."
    assert bad == 422 and failed["status"] == "failed" and failed["error"]["message"]
    assert (empty, big, wrong_route) == (400, 413, 404)


MB = 1024 * 1024


@pytest.mark.parametrize("path, limit", [("/v1/transcribe", 1000), ("/push/job", PUSH_MAX_BYTES)])
def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(path, limit):
    app = create_app(EMULATED.replace(max_request_bytes=1000), "stt", build=lambda: make_handlers(stt=FakeStt()))

    async def scenario(client):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
        await writer.drain()
        try:  # no byte of the body is sent: only a refusal on the header can answer
            return await asyncio.wait_for(reader.readline(), 5)
        finally:
            writer.close()

    assert serve(app, scenario).startswith(b"HTTP/1.1 413")


async def chunks(count: int, chunk: bytes):
    for _ in range(count):
        yield chunk


def test_a_chunked_body_is_refused_once_it_passes_the_limit_and_audio_streams_to_disk():
    app = create_app(EMULATED.replace(max_request_bytes=40 * MB), "stt", build=lambda: make_handlers(stt=FakeStt()))
    chunk = os.urandom(MB)

    async def scenario(client):
        over = await client.post("/v1/transcribe", data=chunks(41, chunk))
        tracemalloc.start()
        try:
            under = await client.post("/v1/transcribe", data=chunks(40, chunk))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return over.status, await over.text(), under.status, peak

    over, refusal, under, peak = serve(app, scenario)
    assert (over, under) == (413, 422)  # random bytes are no audio, but they were all received
    assert "send larger files through the inbox bucket" in refusal
    assert peak < 8 * MB, f"{peak / MB:.0f} MB allocated while receiving a 40 MB body"


def test_push_auth_off_is_refused_unless_talking_to_emulators():
    with pytest.raises(ConfigError, match="PUSH_AUTH=off"):
        create_app(Settings.from_env({}, push_auth="off"), "stt", build=lambda: None)
    with pytest.raises(ConfigError, match="PUSH_AUDIENCE"):
        create_app(Settings.from_env({}), "joiner", build=lambda: None)
    # Only a Pub/Sub emulator on this machine makes unsigned pushes acceptable.
    for elsewhere in ({"storage_emulator_host": "http://127.0.0.1:1"}, {"pubsub_emulator_host": "10.0.0.5:8085"}):
        with pytest.raises(ConfigError, match="PUSH_AUTH=off"):
            create_app(Settings.from_env({}, push_auth="off", **elsewhere), "joiner", build=lambda: None)
    for local in ("127.0.0.1:8085", "localhost:8085", "[::1]:8085"):
        create_app(Settings.from_env({}, push_auth="off", pubsub_emulator_host=local), "joiner", build=lambda: None)


def test_unknown_role_is_a_config_error():
    with pytest.raises(ConfigError, match="ROLE"):
        create_app(EMULATED, "transcoder", build=lambda: None)


def test_a_push_past_the_running_and_waiting_jobs_is_refused_with_429_and_its_redelivery_succeeds():
    """WORKER_CONCURRENCY 2 and WORKER_QUEUE 1: of four jobs pushed at once, two run at once, one
    waits, the fourth is answered 429 (Pub/Sub delivers it again); delivered again once the
    others are done, it is processed. Nothing is lost, nothing written twice."""
    store, bus = MemoryBlobStore(), MemoryBus()
    stt = FakeStt(delay=0.5)
    jobs = [upload(store, f"{i}.wav", WAV) for i in range(4)]
    settings = EMULATED.replace(worker_concurrency=2, worker_queue=1)
    app = create_app(settings, "stt", build=lambda: make_handlers(store, bus, stt=stt))

    async def scenario(client):
        async def push(job):
            r = await client.post("/push/job", data=encode_push(to_dict(job)))
            return r.status, r.headers.get("X-Outcome"), r.headers.get("Retry-After")

        first = [asyncio.create_task(push(job)) for job in jobs[:3]]
        await asyncio.sleep(0.2)  # the three are admitted: two run, one waits
        refused = await push(jobs[3])
        done = await asyncio.gather(*first)
        again = await push(jobs[3])
        return done, refused, again

    done, refused, again = serve(app, scenario)
    assert done == [(204, "done", None)] * 3
    assert refused[0] == 429 and refused[2] is not None
    assert again[:2] == (204, "done")
    assert len(stt.windows) == 4, "each job transcribed once"
    overlapping = sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(stt.windows) for b in stt.windows[i + 1:])
    assert overlapping >= 1, "two jobs ran at once"
    assert all(store.stat("staging", partial_key(job.job_id, "stt")) is not None for job in jobs)


def test_one_job_at_a_time_by_default_with_two_waiting():
    settings = Settings.from_env({})
    assert (settings.service.concurrency, settings.service.queue) == (1, 2)
