"""What one service process holds: its role, its handler once loaded, its HTTP session."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Mapping

import aiohttp
from aiohttp import web

from workers.core.contracts import Sentiment
from workers.core.errors import Overloaded
from workers.core.settings import ApiSettings, ServiceSettings
from workers.entrypoints.http.auth import PushVerifier
from workers.processing.handlers import Handlers, JobHandler, Joiner

JSON = "application/json"


@dataclasses.dataclass
class ServiceState:
    role: str
    project: str
    service: ServiceSettings
    api: ApiSettings
    sentiment_map: Mapping[str, Sentiment]
    build: Callable[[], Handlers | None]
    verifier: PushVerifier | None
    id_token_header: Callable[[str], Awaitable[dict[str, str]]] | None
    executor: ThreadPoolExecutor
    handler: JobHandler | Joiner | None = None
    ready: bool = False
    load_error: BaseException | None = None
    on_load_error: Callable[[BaseException], None] | None = None
    session: aiohttp.ClientSession | None = None
    loader: asyncio.Task | None = None
    room: int | None = None  # jobs admitted at once, running and waiting (None: no bound)
    admitted: int = 0

    async def run_job(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``run`` for one job, if the instance has room for it (running plus waiting below
        ``room``), else ``Overloaded``: answered 429, so Pub/Sub delivers the job again later.
        Counted on the event loop, so no lock is needed."""
        if self.room is not None and self.admitted >= self.room:
            raise Overloaded(f"{self.admitted} jobs running or waiting, the most this {self.role} instance takes "
                             f"(WORKER_CONCURRENCY + WORKER_QUEUE); deliver it again later")
        self.admitted += 1
        try:
            return await self.run(fn, *args)
        finally:
            self.admitted -= 1

    def job_handler(self) -> JobHandler:
        assert isinstance(self.handler, JobHandler), "an stt or ser service holds a job handler"
        return self.handler

    def joiner(self) -> Joiner:
        assert isinstance(self.handler, Joiner), "the joiner service holds the joiner"
        return self.handler

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking work on the service's executor, keeping the log context (trace)."""
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, ctx.run, fn, *args)


STATE = web.AppKey("state", ServiceState)


def ready_state(request: web.Request) -> ServiceState:
    """The service's state; 503 (retried by Pub/Sub and callers) while its model is loading."""
    state = request.app[STATE]
    if not state.ready:
        raise web.HTTPServiceUnavailable(text="models are loading")
    return state
