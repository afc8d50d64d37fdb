"""The worker services: one aiohttp code base, the role (stt, ser, joiner, api) chosen by setting.

A thin web adapter. Push endpoints verify the OIDC token, decode the Pub/Sub envelope, call
one handler and map its outcome to a status code:

- done / duplicate / failed-and-recorded / waiting / superseded → 204 (Pub/Sub acks);
- a push that can never succeed (malformed envelope or message, a job id that is not the one
  of the object it names) → 204 with ``X-Outcome: invalid`` and a warning: Pub/Sub would
  redeliver any other status until the message is dead-lettered;
- malformed direct request → 400, bad or missing token → 401, wrong caller → 403;
- TransientError or anything unexpected → 500 (Pub/Sub retries, then dead-letters);
- model not loaded yet → 503 (retried).

STT and SER run inference on a single-worker executor: one job at a time per instance, off
the event loop, with the models loaded once at start-up (``/healthz`` answers 503 until
then). Bodies are never held whole in memory before their size is known: a declared
``Content-Length`` over the limit is refused (413) before anything is read, a chunked body is
counted while it streams and refused as soon as it passes the limit, and audio goes to a
temporary file chunk by chunk (push envelopes, small by nature, are read into memory up to
PUSH_MAX_BYTES). Direct endpoints answer with the partial (``/v1/transcribe``, ``/v1/emotions``: 200 when
ok, 422 with the failed partial for bad audio); the api role's ``/v1/analyze`` calls both
concurrently and answers with the merged result.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

from workers import PIPELINE_VERSION, logs
from workers.adapters.local import LocalBlobStore
from workers.adapters.memory import MemoryBus
from workers.adapters.pubsub import decode_push
from workers.contracts import (
    JobMessage,
    PartialReady,
    SerPartial,
    SttPartial,
    dumps,
    from_dict,
    loads,
)
from workers.errors import (
    BadRequestError,
    ConfigError,
    InvalidMessage,
    PermanentError,
    PipelineError,
    TransientError,
)
from workers.handlers import Outcome, Pipeline
from workers.jobs import make_job, now_rfc3339, partial_key
from workers.join import merge, parse_sentiment_map
from workers.service.auth import AuthError, PushVerifier, id_tokens_from_settings
from workers.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("stt", "ser", "joiner", "api")
_SCRATCH_INBOX = "api"
_SCRATCH_STAGING = "api-staging"

JSON = "application/json"
# A Pub/Sub message is at most 10 MB; base64 and the envelope add a third.
PUSH_MAX_BYTES = 14 * 1024 * 1024
BODY_CHUNK_BYTES = 1024 * 1024


@dataclasses.dataclass
class ServiceState:
    settings: Settings
    role: str
    build: Callable[[], Pipeline | None]
    verifier: PushVerifier | None
    id_token_header: Callable[[str], Awaitable[dict[str, str]]] | None
    executor: ThreadPoolExecutor
    pipeline: Pipeline | None = None
    ready: bool = False
    load_error: BaseException | None = None
    on_load_error: Callable[[BaseException], None] | None = None
    session: aiohttp.ClientSession | None = None
    loader: asyncio.Task | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking work on the service's executor, keeping the log context (trace)."""
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, ctx.run, fn, *args)


STATE = web.AppKey("state", ServiceState)


def create_app(
    settings: Settings,
    role: str,
    *,
    build: Callable[[], Pipeline | None] | None = None,
    verifier: PushVerifier | None | str = "from-settings",
    id_token_header: Callable[[str], Awaitable[dict[str, str]]] | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> web.Application:
    """The service for ``role``; ``build`` makes its Pipeline (default: the cloud composition root)."""
    if role not in ROLES:
        raise ConfigError(f"ROLE must be one of {', '.join(ROLES)}, got {role!r}")
    if build is None:
        from workers import bootstrap

        def build() -> Pipeline | None:
            return bootstrap.cloud_pipeline(settings, role)

    if verifier == "from-settings":
        verifier = PushVerifier.from_settings(settings) if role in ("stt", "ser", "joiner") else None
    if role == "api":
        if not settings.stt_url or not settings.ser_url:
            raise ConfigError("the api role needs STT_URL and SER_URL")
        id_token_header = id_token_header or id_tokens_from_settings(settings)
    state = ServiceState(
        settings=settings,
        role=role,
        build=build,
        verifier=verifier,  # type: ignore[arg-type]
        id_token_header=id_token_header,
        # Inference is one job at a time per instance; the joiner only does I/O.
        executor=ThreadPoolExecutor(max_workers=1 if role in ("stt", "ser") else 8, thread_name_prefix=role),
        on_load_error=on_load_error,
    )
    app = web.Application(middlewares=[_errors])
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    if role in ("stt", "ser"):
        app.router.add_post("/push/job", push_job)
        app.router.add_post("/v1/transcribe" if role == "stt" else "/v1/emotions", direct)
    elif role == "joiner":
        app.router.add_post("/push/partial", push_partial)
    else:
        app.router.add_post("/v1/analyze", analyze)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


# --- lifecycle ---------------------------------------------------------------------------------


async def _start(app: web.Application) -> None:
    state = app[STATE]
    state.session = aiohttp.ClientSession()
    state.loader = asyncio.create_task(_load(state))


async def _load(state: ServiceState) -> None:
    t0 = time.perf_counter()
    try:
        state.pipeline = await state.run(state.build)
    except Exception as e:  # noqa: BLE001 - reported by /healthz and, when serving, fatal
        state.load_error = e
        log.critical("%s service failed to start: %s", state.role, e, exc_info=True)
        if state.on_load_error is not None:
            state.on_load_error(e)
        return
    state.ready = True
    log.info("%s service ready in %.1f s", state.role, time.perf_counter() - t0)


async def _stop(app: web.Application) -> None:
    state = app[STATE]
    if state.loader is not None and not state.loader.done():
        state.loader.cancel()
    if state.session is not None:
        await state.session.close()
    # In-flight jobs finish (Cloud Run allows 10 s after SIGTERM; a cut job is redelivered).
    await asyncio.get_running_loop().run_in_executor(None, state.executor.shutdown, True)
    bus = getattr(state.pipeline, "bus", None)
    if hasattr(bus, "close"):
        bus.close()
    log.info("%s service stopped", state.role)


# --- middleware: trace context and error mapping -------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    state = request.app[STATE]
    token = logs.current_trace.set(_trace(request, state.settings.project))
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except AuthError as e:
        log.warning("rejected %s %s: %s", request.method, request.path, e)
        return _error(e.status, e)
    except PermanentError as e:
        if not request.path.startswith("/push/"):
            log.warning("bad request %s %s: %s", request.method, request.path, _shortened(str(e)))
            return _error(400, e)
        log.warning("acknowledged without processing on %s (a redelivery cannot help): %s: %s",
                    request.path, e.code, _shortened(str(e)))
        return web.Response(status=204, headers={"X-Outcome": "invalid"})
    except BadRequestError as e:
        log.warning("bad request %s %s: %s", request.method, request.path, e)
        return _error(400, e)
    except TransientError as e:
        log.error("transient failure on %s: %s", request.path, e)
        return _error(500, e)
    except Exception as e:  # noqa: BLE001 - the web layer is the one place that maps everything
        log.exception("unexpected failure on %s", request.path)
        return _error(500, PipelineError(f"{type(e).__name__}: {e}", code="internal"))
    finally:
        logs.current_trace.reset(token)


def _shortened(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _trace(request: web.Request, project: str) -> str | None:
    header = request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = header.split("/", 1)[0]
    if not trace_id:
        return None
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


def _error(status: int, e: PipelineError) -> web.Response:
    return web.json_response({"error": {"code": e.code, "message": str(e)}}, status=status)


# --- endpoints -----------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.load_error is not None:
        return web.json_response({"status": "failed", "error": str(state.load_error)}, status=500)
    if not state.ready:
        return web.json_response({"status": "loading"}, status=503)
    return web.json_response({"status": "ok", "role": state.role, "version": PIPELINE_VERSION})


async def _authenticated_push(request: web.Request):
    state = request.app[STATE]
    if state.verifier is not None:
        assert state.session is not None
        await state.verifier.verify(request.headers.get("Authorization"), state.session)
    push = decode_push(await _small_body(request, PUSH_MAX_BYTES))
    if not state.ready:
        # Cloud Run's startup probe (and dev-stack's held pushes) keep this from happening.
        log.warning("push answered 503: the %s service is still loading its model", state.role)
        raise web.HTTPServiceUnavailable(text="models are loading")
    return state, push


def _parse(cls: type, data: dict[str, Any]) -> Any:
    try:
        return from_dict(cls, data)
    except ValueError as e:
        raise InvalidMessage(f"not a {cls.__name__}: {e}") from e


async def push_job(request: web.Request) -> web.Response:
    state, push = await _authenticated_push(request)
    job: JobMessage = _parse(JobMessage, push.data)
    pipeline = state.pipeline
    assert pipeline is not None
    handle = pipeline.handle_job_stt if state.role == "stt" else pipeline.handle_job_ser
    log.info("%s job received (attempt %s)", state.role, push.delivery_attempt,
             extra={"job_id": job.job_id, "object": job.name, "attempt": push.delivery_attempt})
    outcome: Outcome = await state.run(handle, job)
    return _acked(outcome, job.job_id)


async def push_partial(request: web.Request) -> web.Response:
    state, push = await _authenticated_push(request)
    ready: PartialReady = _parse(PartialReady, push.data)
    pipeline = state.pipeline
    assert pipeline is not None
    outcome: Outcome = await state.run(pipeline.handle_partial, ready)
    return _acked(outcome, ready.job.job_id)


def _acked(outcome: Outcome, job_id: str) -> web.Response:
    log.info("outcome %s: %s", outcome.status, outcome.detail, extra={"job_id": job_id, "status": outcome.status})
    return web.Response(status=204, headers={"X-Outcome": outcome.status})


_AUDIO_ADVICE = " (MAX_REQUEST_BYTES): send larger files through the inbox bucket"


def _refuse_declared_size(request: web.Request, limit: int, advice: str = "") -> None:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length, advice)


def _too_large(limit: int, size: int, advice: str = "") -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size,
                                         text=f"the body is over {limit} bytes{advice}")


async def _small_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused (413) once it is declared or found to be over ``limit``."""
    _refuse_declared_size(request, limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(BODY_CHUNK_BYTES):
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, len(body))
    return bytes(body)


async def _audio_body(request: web.Request, path: Path) -> tuple[int, str]:
    """Stream the body into ``path``: its size and SHA-256; 413 past MAX_REQUEST_BYTES, 400 when empty."""
    limit = request.app[STATE].settings.max_request_bytes
    _refuse_declared_size(request, limit, _AUDIO_ADVICE)
    size, digest = 0, hashlib.sha256()
    with path.open("wb") as out:
        async for chunk in request.content.iter_chunked(BODY_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, size, _AUDIO_ADVICE)
            digest.update(chunk)
            out.write(chunk)
    if not size:
        raise BadRequestError("the request body is empty: send the audio file as the body")
    return size, digest.hexdigest()


def api_job(digest: str, size: int, content_type: str | None, name: str | None = None) -> JobMessage:
    """The job of a direct request: named by its content, so the same audio gives the same id."""
    return make_job(bucket=_SCRATCH_INBOX, name=name or f"sha256/{digest}", generation=int(digest[:13], 16),
                    size=size, content_type=content_type, source="api")


async def direct(request: web.Request) -> web.Response:
    """/v1/transcribe or /v1/emotions: the partial for the audio in the body."""
    state = request.app[STATE]
    if not state.ready:
        raise web.HTTPServiceUnavailable(text="models are loading")
    assert state.pipeline is not None
    with tempfile.TemporaryDirectory(prefix="direct-") as tmp:
        # The same handler as the push path, over a scratch store that holds only this request.
        scratch = LocalBlobStore({_SCRATCH_INBOX: Path(tmp) / "inbox", _SCRATCH_STAGING: Path(tmp) / "staging"})
        audio = scratch.path(_SCRATCH_INBOX, "audio")
        audio.parent.mkdir()
        size, _ = await _audio_body(request, audio)
        info = scratch.stat(_SCRATCH_INBOX, "audio")
        assert info is not None
        job = make_job(bucket=_SCRATCH_INBOX, name="audio", generation=info.generation, size=size,
                       content_type=request.content_type, source="api")
        pipeline = dataclasses.replace(state.pipeline, store=scratch, bus=MemoryBus(),
                                       staging_bucket=_SCRATCH_STAGING)
        handle = pipeline.handle_job_stt if state.role == "stt" else pipeline.handle_job_ser
        outcome: Outcome = await state.run(handle, job)
        data, _ = scratch.read(_SCRATCH_STAGING, partial_key(job.job_id, state.role))  # type: ignore[arg-type]
    return web.Response(body=data, status=200 if outcome.status == "done" else 422, content_type=JSON)


async def analyze(request: web.Request) -> web.Response:
    """/v1/analyze: STT and SER called concurrently, their partials merged into one result."""
    state = request.app[STATE]
    settings = state.settings
    with tempfile.TemporaryDirectory(prefix="analyze-") as tmp:
        audio = Path(tmp) / "audio"
        size, digest = await _audio_body(request, audio)
        job = api_job(digest, size, request.content_type, request.headers.get("X-Filename"))
        calls = [
            asyncio.ensure_future(_call(state, settings.stt_url, "/v1/transcribe", settings.stt_audience or
                                        settings.stt_url, audio, request.content_type, SttPartial)),
            asyncio.ensure_future(_call(state, settings.ser_url, "/v1/emotions", settings.ser_audience or
                                        settings.ser_url, audio, request.content_type, SerPartial)),
        ]
        try:
            (stt, stt_window), (ser, ser_window) = await asyncio.gather(*calls)
        finally:
            for call in calls:  # one failed (or the client left): the other's answer would go unread
                call.cancel()
    log.info("analyze: stt call %.3f-%.3f s, ser call %.3f-%.3f s", *stt_window, *ser_window,
             extra={"job_id": job.job_id})

    def merged() -> tuple[str, str]:
        result = merge(job, stt, ser, sentiment_map=parse_sentiment_map(settings.sentiment_map),
                       pipeline_version=PIPELINE_VERSION, completed_at=now_rfc3339())
        return dumps(result), result.status

    text, status = await asyncio.to_thread(merged)
    return web.Response(text=text, status=200 if status == "ok" else 422, content_type=JSON)


async def _call(state: ServiceState, base_url: str, path: str, audience: str, audio: Path,
                content_type: str, kind: type) -> tuple[Any, tuple[float, float]]:
    """POST the audio file to one service (streamed from disk); the partial and this call's
    (start, end) on the monotonic clock."""
    assert state.session is not None and state.id_token_header is not None
    headers = {"Content-Type": content_type or "application/octet-stream", **await state.id_token_header(audience)}
    timeout = aiohttp.ClientTimeout(total=state.settings.request_timeout_seconds)
    started = time.monotonic()
    try:
        with audio.open("rb") as body:
            async with state.session.post(base_url.rstrip("/") + path, data=body, headers=headers,
                                          timeout=timeout) as response:
                data = await response.read()
                status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        raise web.HTTPBadGateway(text=f"{path} on {base_url} failed: {e}") from e
    window = (started, time.monotonic())
    if status in (200, 422):
        return loads(kind, data), window
    if status in (400, 413):
        raise BadRequestError(f"{path} refused the audio ({status}): {data[:300].decode(errors='replace')}")
    raise web.HTTPBadGateway(text=f"{path} on {base_url} answered {status}")
