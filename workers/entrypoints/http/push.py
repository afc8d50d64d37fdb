"""Pub/Sub push endpoints: ``/push/job`` (stt and ser) and ``/push/partial`` (joiner).

Each verifies the OIDC token, decodes the envelope, calls the one handler its service was
built with and acknowledges with 204 and the outcome in ``X-Outcome``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from workers.adapters.pubsub import PushMessage, decode_push
from workers.core.contracts import JobMessage, PartialReady, from_dict
from workers.core.errors import InvalidMessage
from workers.entrypoints.http.bodies import small_body
from workers.entrypoints.http.state import STATE, ServiceState
from workers.processing.handlers import Outcome

log = logging.getLogger(__name__)


async def _authenticated_push(request: web.Request) -> tuple[ServiceState, PushMessage]:
    state = request.app[STATE]
    if state.verifier is not None:
        assert state.session is not None
        await state.verifier.verify(request.headers.get("Authorization"), state.session)
    push = decode_push(await small_body(request))
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
    log.info("%s job received (attempt %s)", state.role, push.delivery_attempt,
             extra={"job_id": job.job_id, "object": job.name, "attempt": push.delivery_attempt})
    outcome: Outcome = await state.run_job(state.job_handler(), job)
    return _acked(outcome, job.job_id)


async def push_partial(request: web.Request) -> web.Response:
    state, push = await _authenticated_push(request)
    ready: PartialReady = _parse(PartialReady, push.data)
    outcome: Outcome = await state.run(state.joiner(), ready)
    return _acked(outcome, ready.job.job_id)


def _acked(outcome: Outcome, job_id: str) -> web.Response:
    log.info("outcome %s: %s", outcome.status, outcome.detail, extra={"job_id": job_id, "status": outcome.status})
    return web.Response(status=204, headers={"X-Outcome": outcome.status})
