"""The api role's ``/v1/analyze``: the reference design's one-file API.

It streams the audio to the STT and SER services' direct endpoints at the same time (aiohttp,
a Google ID token per call, never a key file) and answers with the merged result: 200 when
ok, 422 for bad audio, 400 when a service refused the audio, 502 when one could not answer.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from workers import PIPELINE_VERSION
from workers.core.contracts import SerPartial, SttPartial, dumps, loads
from workers.core.errors import BadRequestError
from workers.core.jobs import now_rfc3339
from workers.entrypoints.http.bodies import audio_body
from workers.entrypoints.http.direct import api_job
from workers.entrypoints.http.state import JSON, STATE, ServiceState
from workers.processing.join import merge

log = logging.getLogger(__name__)


async def analyze(request: web.Request) -> web.Response:
    """STT and SER called concurrently, their partials merged into one result."""
    state = request.app[STATE]
    api = state.api
    with tempfile.TemporaryDirectory(prefix="analyze-") as tmp:
        audio = Path(tmp) / "audio"
        size, digest = await audio_body(request, audio, state.service.max_request_bytes)
        job = api_job(digest, size, request.content_type, request.headers.get("X-Filename"))
        calls = [
            asyncio.ensure_future(_call(state, api.stt_url, "/v1/transcribe", api.stt_audience or api.stt_url,
                                        audio, request.content_type, SttPartial)),
            asyncio.ensure_future(_call(state, api.ser_url, "/v1/emotions", api.ser_audience or api.ser_url,
                                        audio, request.content_type, SerPartial)),
        ]
        try:
            (stt, stt_window), (ser, ser_window) = await asyncio.gather(*calls)
        finally:
            for call in calls:  # one failed (or the client left): the other's answer would go unread
                call.cancel()
    log.info("analyze: stt call %.3f-%.3f s, ser call %.3f-%.3f s", *stt_window, *ser_window,
             extra={"job_id": job.job_id})

    def merged() -> tuple[str, str]:
        result = merge(job, stt, ser, sentiment_map=state.sentiment_map, pipeline_version=PIPELINE_VERSION,
                       completed_at=now_rfc3339())
        return dumps(result), result.status

    text, status = await asyncio.to_thread(merged)
    return web.Response(text=text, status=200 if status == "ok" else 422, content_type=JSON)


async def _call(state: ServiceState, base_url: str, path: str, audience: str, audio: Path,
                content_type: str, kind: type) -> tuple[Any, tuple[float, float]]:
    """POST the audio file to one service (streamed from disk); the partial and this call's
    (start, end) on the monotonic clock."""
    assert state.session is not None and state.id_token_header is not None
    headers = {"Content-Type": content_type or "application/octet-stream", **await state.id_token_header(audience)}
    timeout = aiohttp.ClientTimeout(total=state.api.request_timeout_seconds)
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
