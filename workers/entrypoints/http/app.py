"""The worker services: one aiohttp code base, the role (stt, ser, joiner, api) chosen by setting.

This module builds the application (routes, start-up, shut-down) and maps errors to status
codes; the endpoints are in ``push`` (Pub/Sub push), ``direct`` (one file to one service) and
``api`` (one file to both, merged). A thin web adapter: each endpoint calls the one handler
the composition root built for the role and maps its outcome to a status code:

- done / duplicate / failed-and-recorded / waiting / superseded → 204 (Pub/Sub acks);
- a push that can never succeed (malformed envelope or message, a job id that is not the one
  of the object it names) → 204 with ``X-Outcome: invalid`` and a warning: Pub/Sub would
  redeliver any other status until the message is dead-lettered;
- malformed direct request → 400, bad or missing token → 401, wrong caller → 403;
- no room for one more job (Overloaded) → 429 with Retry-After (Pub/Sub retries; no attempt
  is wasted on a failure);
- TransientError or anything unexpected → 500 (Pub/Sub retries, then dead-letters);
- model not loaded yet → 503 (retried).

STT and SER run inference off the event loop, WORKER_CONCURRENCY jobs at once per instance
(each on an engine worker of its own), with the models loaded once at start-up (``/healthz``
answers 503 until then). At most WORKER_QUEUE more wait for a slot; a push or direct request
past that is refused with 429 (``Overloaded``, a ``TransientError``): Pub/Sub delivers it again
after its backoff, so a burst waits in Pub/Sub, not in an instance's memory. Bodies are never
held whole in memory before their size is known (``bodies``). Direct
endpoints answer with the partial (``/v1/transcribe``, ``/v1/emotions``: 200 when ok, 422 with
the failed partial for bad audio); the api role's ``/v1/analyze`` calls both concurrently and
answers with the merged result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from workers import PIPELINE_VERSION
from workers.core import logs
from workers.core.errors import (BadRequestError, ConfigError, Overloaded, PermanentError, PipelineError,
                                 TransientError)
from workers.core.settings import ROLES, Settings
from workers.entrypoints.http.api import analyze
from workers.entrypoints.http.auth import AuthError, PushVerifier, id_tokens_from_settings
from workers.entrypoints.http.direct import direct
from workers.entrypoints.http.push import push_job, push_partial
from workers.entrypoints.http.state import STATE, ServiceState
from workers.processing.handlers import Handlers, JobHandler
from workers.processing.sentiment_map import parse_sentiment_map

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    role: str,
    *,
    build: Callable[[], Handlers | None] | None = None,
    verifier: PushVerifier | None | str = "from-settings",
    id_token_header: Callable[[str], Awaitable[dict[str, str]]] | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> web.Application:
    """The service for ``role``; ``build`` makes its handlers (default: the composition root's,
    over Cloud Storage and Pub/Sub), called once at start-up, off the event loop."""
    if role not in ROLES:
        raise ConfigError(f"ROLE must be one of {', '.join(ROLES)}, got {role!r}")
    if build is None:
        from workers.composition import Root

        def build() -> Handlers | None:
            return Root.cloud(settings).service_handlers(role)

    if verifier == "from-settings":
        verifier = (PushVerifier.from_settings(settings.push, settings.cloud.pubsub_emulator_host)
                    if role in ("stt", "ser", "joiner") else None)
    if role == "api":
        if not settings.api.stt_url or not settings.api.ser_url:
            raise ConfigError("the api role needs STT_URL and SER_URL")
        id_token_header = id_token_header or id_tokens_from_settings(settings.api)
    state = ServiceState(
        role=role,
        project=settings.cloud.project,
        service=settings.service,
        api=settings.api,
        sentiment_map=parse_sentiment_map(settings.join.sentiment_map),
        build=build,
        verifier=verifier,  # type: ignore[arg-type]
        id_token_header=id_token_header,
        # Inference runs WORKER_CONCURRENCY jobs at a time per instance; the joiner only does I/O.
        executor=ThreadPoolExecutor(max_workers=settings.service.concurrency if role in ("stt", "ser") else 8,
                                    thread_name_prefix=role),
        room=settings.service.concurrency + settings.service.queue if role in ("stt", "ser") else None,
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


def _handler_for(state: ServiceState, handlers: Handlers | None):
    """The one handler this service runs; a service built without it (or with another
    worker) fails at start-up, not on its first request."""
    if state.role == "api":
        return None
    if handlers is None:
        raise ConfigError(f"the {state.role} service was built without handlers")
    handler = handlers.for_role(state.role)
    if isinstance(handler, JobHandler) and handler.kind != state.role:
        raise ConfigError(f"the {state.role} service was built with the {handler.kind} worker")
    return handler


# --- lifecycle ---------------------------------------------------------------------------------


async def _start(app: web.Application) -> None:
    state = app[STATE]
    state.session = aiohttp.ClientSession()
    state.loader = asyncio.create_task(_load(state))


async def _load(state: ServiceState) -> None:
    t0 = time.perf_counter()
    try:
        state.handler = _handler_for(state, await state.run(state.build))
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
    if isinstance(state.handler, JobHandler) and hasattr(state.handler.staging.bus, "close"):
        state.handler.staging.bus.close()  # the joiner publishes nothing
    log.info("%s service stopped", state.role)


# --- middleware: trace context and error mapping -------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    state = request.app[STATE]
    token = logs.current_trace.set(_trace(request, state.project))
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
    except Overloaded as e:
        log.warning("refused %s %s for now: %s", request.method, request.path, e)
        response = _error(429, e)
        response.headers["Retry-After"] = "10"
        return response
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
