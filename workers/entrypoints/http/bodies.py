"""Request bodies read without holding a large one in memory before its size is known.

A declared ``Content-Length`` over the limit is refused (413) before anything is read, a
chunked body is counted while it streams and refused as soon as it passes the limit, and
audio goes to a temporary file chunk by chunk (push envelopes, small by nature, are read into
memory up to PUSH_MAX_BYTES).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

from workers.core.errors import BadRequestError

# A Pub/Sub message is at most 10 MB; base64 and the envelope add a third.
PUSH_MAX_BYTES = 14 * 1024 * 1024
BODY_CHUNK_BYTES = 1024 * 1024
_AUDIO_ADVICE = " (MAX_REQUEST_BYTES): send larger files through the inbox bucket"


def _refuse_declared_size(request: web.Request, limit: int, advice: str = "") -> None:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length, advice)


def _too_large(limit: int, size: int, advice: str = "") -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size,
                                         text=f"the body is over {limit} bytes{advice}")


async def small_body(request: web.Request, limit: int = PUSH_MAX_BYTES) -> bytes:
    """The whole body, refused (413) once it is declared or found to be over ``limit``."""
    _refuse_declared_size(request, limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(BODY_CHUNK_BYTES):
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, len(body))
    return bytes(body)


async def audio_body(request: web.Request, path: Path, limit: int) -> tuple[int, str]:
    """Stream the body into ``path``: its size and SHA-256; 413 past ``limit``, 400 when empty."""
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
