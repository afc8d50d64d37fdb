"""Direct endpoints of the stt and ser services: ``/v1/transcribe`` and ``/v1/emotions``.

The audio in the body goes through the service's own worker (the one its push endpoint runs)
and the partial comes back: 200 when ok, 422 with the failed partial for bad audio, 429 when the
instance has no room for one more job (its slots and queue full).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from aiohttp import web

from workers.core.contracts import JobMessage, dumps
from workers.core.jobs import make_job
from workers.entrypoints.http.bodies import audio_body
from workers.entrypoints.http.state import JSON, ready_state
from workers.processing.handlers import analyse_file

API_BUCKET = "api"  # the bucket named by jobs of direct requests: there is none, the audio is the body


def api_job(digest: str, size: int, content_type: str | None, name: str | None = None) -> JobMessage:
    """The job of a direct request: named by its content, so the same audio gives the same id."""
    return make_job(bucket=API_BUCKET, name=name or f"sha256/{digest}", generation=int(digest[:13], 16),
                    size=size, content_type=content_type, source="api")


async def direct(request: web.Request) -> web.Response:
    """The partial for the audio in the body."""
    state = ready_state(request)
    handler = state.job_handler()
    with tempfile.TemporaryDirectory(prefix="direct-") as tmp:
        audio = Path(tmp) / "audio"
        size, digest = await audio_body(request, audio, state.service.max_request_bytes)
        job = api_job(digest, size, request.content_type)
        partial = await state.run_job(functools.partial(analyse_file, handler.worker, job, audio,
                                                        max_audio_seconds=handler.max_audio_seconds,
                                                        clock=handler.clock))
    return web.Response(text=dumps(partial), status=200 if partial.status == "ok" else 422, content_type=JSON)
