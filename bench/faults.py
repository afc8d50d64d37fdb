"""The fault campaign: the emulated cloud path (dev-stack) and the services under faults.

    python -m bench faults                 every scenario, 30 jobs each
    python -m bench faults --jobs 10       smaller bursts

Prints one table. Each burst scenario uploads its own files and counts, once the results stop
coming (or a deadline passes): jobs tried, results held (each upload's result of its own
generation), jobs duplicated (a result written more than once), stuck (one partial, no result),
unjoined (both partials, no result), lost (no partial, no result) and dead-lettered (messages
in the dead-letter subscriptions), the time to the last result and the peak RSS of each
service. Scenarios: each event delivered many times, each service SIGKILLed mid-burst, the
staging and results buckets refusing writes (503, 403) and the results bucket alone refusing
them (403: both partials, no result), a job for a generation that does not exist sent before
each upload and again after its result, and object names outside Latin-1. The in-process
scenarios send forged push tokens (accepted must be 0) and malformed push messages (each
acknowledged, retried or crashed). tests/faults runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from devstack import emulators
from devstack.bridge import cloud_event, http_request
from devstack.stack import NOTIFY_TOPIC, SERVICE_ROLES, DevStack
from workers.core.jobs import make_job_id, partial_key, result_key
from workers.core.settings import Settings


HEAL_EVERY = 30.0


@dataclass
class Row:
    scenario: str
    jobs: int
    results: int = 0
    duplicated: int = 0
    stuck: int = 0
    unjoined: int = 0
    lost: int = 0
    dead_lettered: int = 0
    healed: int = 0  # job messages the healer sent again
    seconds: float = 0.0
    peak_rss_mb: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        rss = " ".join(f"{k}={v}" for k, v in self.peak_rss_mb.items())
        return (f"{self.scenario:<28} {self.jobs:>5} {self.results:>7} {self.duplicated:>10} {self.stuck:>6} "
                f"{self.unjoined:>8} {self.lost:>5} {self.dead_lettered:>13} {self.healed:>6} "
                f"{self.seconds:>8.1f}  {rss}")


HEADER = (f"{'scenario':<28} {'tried':>5} {'held':>7} {'duplicated':>10} {'stuck':>6} {'unjoined':>8} {'lost':>5} "
          f"{'dead-lettered':>13} {'healed':>6} {'seconds':>8}  peak RSS MB")


# --- bursts through the emulated cloud path -------------------------------------------------------

def burst(stack: DevStack, scenario: str, audio: Path, jobs: int, *, during: Callable[[int], None] | None = None,
          deadline_seconds: float = 180.0, heal_every: float = 0.0) -> Row:
    """Upload ``jobs`` copies of ``audio``; ``during(i)`` runs after the i-th upload; with
    ``heal_every``, the healer runs that often while results are awaited."""
    started = time.monotonic()
    uploads = []
    for i in range(jobs):
        uploads.append(stack.upload(audio, f"faults/{scenario}/{i:04d}.wav"))
        if during is not None:
            during(i)
    return account(stack, scenario, uploads, started, deadline_seconds, heal_every)


def heal(stack: DevStack, older_than: float) -> int:
    """What the scheduled healer (`stuck --republish`) does: uploads with no result older than
    ``older_than`` seconds, whatever their partials, get their job message again."""
    from datetime import timedelta

    from workers.adapters.pubsub import PubSubBus
    from workers.ops.tracking import jobs_to_heal, republish_stuck

    n = stack.names
    found = jobs_to_heal(stack.store, n.staging, timedelta(seconds=older_than), inbox_bucket=n.inbox,
                         results_bucket=n.results)
    if not found:
        return 0
    bus = PubSubBus(emulators.PROJECT)
    try:
        return len(republish_stuck(stack.store, bus, found, inbox_bucket=n.inbox, jobs_topic=n.jobs))
    finally:
        bus.close()


def account(stack: DevStack, scenario: str, uploads: list[tuple[str, int]], started: float,
            deadline_seconds: float, heal_every: float = 0.0) -> Row:
    row = Row(scenario, len(uploads))
    deadline = time.monotonic() + deadline_seconds
    waiting = list(uploads)
    healed_at = time.monotonic()
    while waiting and time.monotonic() < deadline:
        waiting = [(name, generation) for name, generation in waiting if stack.result(name, generation) is None]
        if waiting and heal_every and time.monotonic() - healed_at >= heal_every:
            row.healed += heal(stack, older_than=heal_every)
            healed_at = time.monotonic()
        if waiting:
            time.sleep(0.5)
    row.seconds = time.monotonic() - started
    joiner_log = stack.processes["joiner"].log_path.read_text(errors="replace")
    for name, generation in uploads:
        job_id = make_job_id(stack.names.inbox, name, generation)
        writes = len(re.findall(rf"result (ok|failed) written to .*\[job {job_id[:8]}\]", joiner_log))
        if stack.result(name, generation) is not None:
            row.results += 1
            row.duplicated += writes > 1
            continue
        partials = [k for k in ("stt", "ser") if stack.store.stat(stack.names.staging, partial_key(job_id, k))]
        row.stuck += len(partials) == 1
        row.unjoined += len(partials) == 2
        row.lost += not partials
    row.dead_lettered = sum(len(emulators.pull(stack.names.dead_letter(topic), max_messages=1000))
                            for topic in (stack.names.jobs, stack.names.partials))
    row.peak_rss_mb = {role: peak_rss_mb(stack, role) for role in SERVICE_ROLES}
    return row


def peak_rss_mb(stack: DevStack, role: str) -> int:
    proc = stack.processes[role].proc
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text() if proc is not None else ""
    except FileNotFoundError:
        return 0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) // 1024 if found else 0


def redelivered_events(stack: DevStack, audio: Path, jobs: int, copies: int = 10) -> Row:
    """Each upload's finalize event delivered ``copies`` more times (Eventarc is at least once)."""
    started = time.monotonic()
    uploads = [stack.upload(audio, f"faults/duplicates/{i:04d}.wav") for i in range(jobs)]
    for name, generation in uploads:
        info = stack.store.stat(stack.names.inbox, name)
        assert info is not None
        notification = type("Notification", (), {})()
        notification.attributes = {"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1",
                                   "bucketId": stack.names.inbox, "objectId": name, "eventTime": info.updated}
        notification.data = json.dumps({"bucket": info.bucket, "name": name, "generation": str(generation),
                                        "size": str(info.size), "contentType": "audio/wav"}).encode()
        notification.message_id = f"again-{generation}"
        headers, body = http_request(cloud_event(notification))
        for _ in range(copies):
            requests.post(stack.urls["trigger"] + "/", data=body, headers=headers, timeout=30).raise_for_status()
    return account(stack, f"event x{copies + 1}", uploads, started, 180.0)


def killed_mid_burst(stack: DevStack, audio: Path, jobs: int, role: str) -> Row:
    """``role`` SIGKILLed twice during the burst, each time restarted at once."""
    kills = {jobs // 3, 2 * jobs // 3}

    def kill(i: int) -> None:
        if i in kills:
            stack.kill(role)
            stack.restart(role)

    return burst(stack, f"SIGKILL {role} x2", audio, jobs, during=kill)


# --- storage faults ---------------------------------------------------------------------------------

class FaultyStorage:
    """A proxy in front of the GCS emulator that answers ``status`` to writes into some buckets
    for a while (a missing grant, an outage), and passes everything else through."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self._fault: tuple[int, float, tuple[str, ...]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> "FaultyStorage":
        import threading

        ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._serve(ready)), daemon=True).start()
        ready.wait(10)
        return self

    def fail(self, status: int, seconds: float, buckets: tuple[str, ...]) -> None:
        self._fault = (status, time.monotonic() + seconds, buckets)

    def _refused(self, method: str, path: str) -> int | None:
        if self._fault is None or method in ("GET", "HEAD"):
            return None
        status, until, buckets = self._fault
        if time.monotonic() > until:
            return None
        return status if any(f"/b/{bucket}/" in path for bucket in buckets) else None

    async def _serve(self, ready) -> None:
        import aiohttp
        from aiohttp import web

        hop = {"content-length", "transfer-encoding", "content-encoding", "connection", "host"}
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async def forward(request: web.Request) -> web.StreamResponse:
                status = self._refused(request.method, request.path)
                if status is not None:
                    return web.json_response({"error": {"code": status, "message": "injected fault"}}, status=status)
                async with session.request(request.method, self.upstream + request.path_qs,
                                           headers={k: v for k, v in request.headers.items() if k.lower() not in hop},
                                           data=await request.read()) as answer:
                    body = await answer.read()
                    headers = {k: v for k, v in answer.headers.items() if k.lower() not in hop}
                    return web.Response(status=answer.status, body=body, headers=headers)

            app = web.Application(client_max_size=1 << 30)
            app.router.add_route("*", "/{tail:.*}", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = emulators.free_port()
            await web.TCPSite(runner, emulators.HOST, port).start()
            self.url = f"http://{emulators.HOST}:{port}"
            ready.set()
            await asyncio.Event().wait()


def storage_fault(stack: DevStack, storage: FaultyStorage, audio: Path, jobs: int, status: int,
                  seconds: float, heal_every: float = HEAL_EVERY, *, results_only: bool = False) -> Row:
    """Writes to staging and results (or to results alone: the engines finish, the joiner cannot)
    answer ``status`` for ``seconds`` from the burst's start; the healer runs every
    ``heal_every`` seconds (hourly in Terraform) as the cloud's scheduler would."""
    names = stack.names
    storage.fail(status, seconds, (names.results,) if results_only else (names.staging, names.results))
    where = "results" if results_only else "store"
    return burst(stack, f"{where} {status} for {seconds:.0f} s", audio, jobs, heal_every=heal_every)


# --- jobs and names no upload path makes -------------------------------------------------------------

MISSING_GENERATION = 2**62


def forged_generation(stack: DevStack, audio: Path, jobs: int, deadline_seconds: float = 180.0) -> Row:
    """Before each upload, a job with a correct id for its name at a generation that does not
    exist (it fails with ``source_gone``); after the upload's result, another one. The real
    upload must get its result and keep it."""
    started = time.monotonic()
    names = [f"faults/forged/{i:04d}.wav" for i in range(jobs)]
    _send_jobs(stack, names, MISSING_GENERATION)
    _wait(lambda: all(stack.result(name, MISSING_GENERATION) for name in names), deadline_seconds)
    uploads = [stack.upload(audio, name) for name in names]
    first = account(stack, "forged generation", uploads, started, deadline_seconds)
    _send_jobs(stack, names, MISSING_GENERATION + 1)
    after = [partial_key(make_job_id(stack.names.inbox, name, MISSING_GENERATION + 1), kind)
             for name in names for kind in ("stt", "ser")]
    _wait(lambda: all(stack.store.stat(stack.names.staging, key) for key in after), deadline_seconds)
    time.sleep(3.0)  # the joiner's turn on the last announcements
    row = account(stack, "forged generation", uploads, started, 0.0)
    row.duplicated = max(row.duplicated, first.duplicated)
    return row


def _send_jobs(stack: DevStack, names: list[str], generation: int) -> None:
    from workers.adapters.pubsub import PubSubBus
    from workers.core.contracts import to_dict
    from workers.core.jobs import make_job

    bus = PubSubBus(emulators.PROJECT)
    try:
        for name in names:
            job = make_job(bucket=stack.names.inbox, name=name, generation=generation, size=1, content_type=None,
                           source="upload")
            bus.publish(stack.names.jobs, to_dict(job), {"job_id": job.job_id})
    finally:
        bus.close()


def _wait(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.5)


ODD_NAMES = ("ünïcödé 日本語.wav", "\u202evaw.3pm.wav", '100% "quoted".wav')


def odd_names(stack: DevStack, audio: Path, deadline_seconds: float = 180.0) -> Row:
    """Object names outside Latin-1 (Unicode, U+202E) and with characters HTTP header values
    escape (space, '"', '%'), uploaded through the notification bridge and the trigger."""
    started = time.monotonic()
    uploads = [stack.upload(audio, f"faults/names/{name}") for name in ODD_NAMES]
    return account(stack, "odd names", uploads, started, deadline_seconds)


def newline_name(stack: DevStack, audio: Path, settle_seconds: float = 5.0) -> tuple[int, bool]:
    """(job messages the trigger published, a result listed) for a name holding a newline.

    Cloud Storage refuses such names (no CR or LF in object names); fake-gcs-server stores them
    but cannot serve them back by path, so the job fails with ``source_gone`` and its result
    can only be listed, not read. What matters here: the bridge delivers the event once instead
    of having it refused and redelivered forever."""
    name, generation = stack.upload(audio, "faults/names/new\nline.wav")
    job_id = make_job_id(stack.names.inbox, name, generation)
    listed = _listed(stack, result_key(name))
    _wait(lambda: listed(), 60.0)
    time.sleep(settle_seconds)  # a redelivery would publish again meanwhile
    trigger_log = stack.processes["trigger"].log_path.read_text(errors="replace")
    published = len(re.findall(rf"job published for .*\[job {job_id[:8]}\]", trigger_log))
    return published, listed()


def _listed(stack: DevStack, key: str) -> Callable[[], bool]:
    return lambda: any(info.name == key for info in stack.store.list(stack.names.results, key.split("\n")[0]))


# --- the services in process -----------------------------------------------------------------------

def forged_tokens() -> tuple[int, int]:
    """(tokens sent, accepted): every token here must be refused."""
    from tests.oidc_factory import PUSH_SA, SigningKey

    key, attacker = SigningKey.generate("key-1"), SigningKey.generate("key-1")
    audience, now = "https://stt.example/push/job", int(time.time())
    tokens = [
        attacker.token(audience=audience),  # same key id, another private key
        key.token(audience=audience, expires_in=-120),
        key.token(audience="https://other.example/push/job"),
        key.token(audience=audience, issuer="https://evil.example"),
        key.token(audience=audience, email="someone@example.iam.gserviceaccount.com"),
        key.token(audience=audience, nbf=now + 600),
        key.token(audience=audience, expires_in=100 * 365 * 86400),
        key.token(audience=audience, exp=str(now + 600)),
        key.token(audience=audience, email_verified="false"),
        "e30.e30.",  # alg none, no signature
        "not-a-jwt",
    ]
    statuses = asyncio.run(_push_tokens(key, audience, PUSH_SA, tokens))
    return len(tokens), sum(200 <= s < 300 for s in statuses)


async def _push_tokens(key, audience: str, account: str, tokens: list[str]) -> list[int]:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from tests.oidc_factory import certs_page
    from tests.handlers_factory import make_handlers
    from tests.unit.test_service import WAV, FakeStt, upload, wait_ready
    from workers.adapters.memory import MemoryBlobStore
    from workers.adapters.pubsub import encode_push
    from workers.core.contracts import to_dict
    from workers.entrypoints.http.app import create_app

    async def certs(request):
        return web.json_response(certs_page(key))

    cert_app = web.Application()
    cert_app.router.add_get("/certs", certs)
    async with TestServer(cert_app, host="127.0.0.1") as cert_server:
        settings = Settings.from_env({}, push_audience=audience, push_service_account=account,
                                     oidc_certs_url=str(cert_server.make_url("/certs")))
        store = MemoryBlobStore()
        body = encode_push(to_dict(upload(store, "a.wav", WAV)))
        app = create_app(settings, "stt", build=lambda: make_handlers(store, stt=FakeStt()))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await wait_ready(client)
            return [(await client.post("/push/job", data=body, headers={"Authorization": f"Bearer {t}"})).status
                    for t in tokens]


def malformed_messages() -> dict[str, int]:
    """Push bodies that can never succeed: acknowledged (2xx), retried (other) or crashed (500 internal)."""
    import base64

    from tests.handlers_factory import make_handlers
    from tests.unit.test_service import EMULATED, FakeStt, serve
    from workers.adapters.pubsub import encode_push
    from workers.core.jobs import make_job
    from workers.core.contracts import to_dict
    from workers.entrypoints.http.app import create_app

    job = to_dict(make_job(bucket="inbox", name="a.wav", generation=5, size=1, content_type=None, source="upload"))
    deep = b"[" * 100_000 + b"]" * 100_000
    bodies = [
        b"not json", deep,
        json.dumps({"message": {"data": base64.b64encode(deep).decode()}}).encode(),
        encode_push({**job, "bucket": ""}), encode_push({**job, "name": ""}),
        encode_push({**job, "name": "\ud800.wav"}), encode_push({**job, "name": "x" * 5000}),
        encode_push({**job, "generation": -1}), encode_push({**job, "job_id": "0" * 32}),
        json.dumps({"message": {"data": base64.b64encode(json.dumps(job).encode()).decode()},
                    "deliveryAttempt": "9" * 5000}).encode(),
    ]
    app = create_app(EMULATED, "stt", build=lambda: make_handlers(stt=FakeStt()))

    async def scenario(client):
        answers = []
        for body in bodies:
            response = await client.post("/push/job", data=body)
            crashed = response.status == 500 and "internal" in await response.text()
            answers.append("crashed" if crashed else "acknowledged" if response.status < 300 else "retried")
        return answers

    answers = serve(app, scenario)
    return {kind: answers.count(kind) for kind in ("acknowledged", "retried", "crashed")}


# --- the campaign ----------------------------------------------------------------------------------

def campaign(stack: DevStack, storage: FaultyStorage, audio: Path, jobs: int, out=sys.stdout,
             only: tuple[str, ...] = ()) -> list[Row]:
    rows = []
    print(HEADER, file=out, flush=True)
    scenarios = [("each event delivered", lambda: redelivered_events(stack, audio, jobs)),
                 *[(f"SIGKILL {role}", lambda role=role: killed_mid_burst(stack, audio, jobs, role))
                   for role in SERVICE_ROLES],
                 ("store 503", lambda: storage_fault(stack, storage, audio, jobs, 503, 40)),
                 ("store 403", lambda: storage_fault(stack, storage, audio, jobs, 403, 40)),
                 ("results 403", lambda: storage_fault(stack, storage, audio, jobs, 403, 40, results_only=True)),
                 ("forged generation", lambda: forged_generation(stack, audio, jobs)),
                 ("odd names", lambda: odd_names(stack, audio)),
                 ("burst", lambda: burst(stack, f"burst of {jobs * 4}", audio, jobs * 4))]
    for name, run in scenarios:
        if only and not any(part in name for part in only):
            continue
        rows.append(run())
        print(rows[-1].line(), file=out, flush=True)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30, help="jobs per burst (the last burst has 4x)")
    parser.add_argument("--only", metavar="TEXT", action="append", default=[],
                        help="run only the scenarios whose name contains TEXT (e.g. 'store 403'; repeatable)")
    args = parser.parse_args(argv)
    from tests.audio_factory import encode, tone
    from workers.setup.models import WHISPER_TINY_EN, setup_models

    models = Path(Settings.from_env().models.models_dir)
    setup_models(models)
    settings = Settings.from_env({}, models_dir=str(models), stt_model=str(models / WHISPER_TINY_EN))
    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    audio = workdir / "tone.wav"
    audio.write_bytes(encode(tone(3.0, freq=300.0)))
    sent, accepted = forged_tokens()
    print(f"forged push tokens: {sent} sent, {accepted} accepted")
    print("malformed push messages: " + ", ".join(f"{k} {v}" for k, v in malformed_messages().items()))
    with emulators.PubSubEmulator(workdir / "pubsub") as pubsub:
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host_port
        emulators.create_topic(NOTIFY_TOPIC)
        with emulators.FakeGcsServer(workdir / "gcs", pubsub_host_port=pubsub.host_port,
                                     notify_topic=NOTIFY_TOPIC) as gcs:
            storage = FaultyStorage(gcs.url).start()
            with DevStack(settings, workdir, pubsub_host_port=pubsub.host_port, gcs_url=storage.url) as stack:
                rows = campaign(stack, storage, audio, args.jobs, only=tuple(args.only))
                if not args.only or any(part in "odd names" for part in args.only):
                    published, listed = newline_name(stack, audio)
                    print(f"a name with a newline: {published} job message(s) published, result "
                          f"{'listed' if listed else 'missing'}")
    return 0 if all(r.results == r.jobs and not r.duplicated for r in rows) and not accepted else 1
