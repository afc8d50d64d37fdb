"""Handlers over in-memory ports, as the composition root wires them, with fake or real engines."""

from __future__ import annotations

from workers.adapters.memory import MemoryBlobStore, MemoryBus
from workers.engines.diarization import speech_regions
from workers.processing.handlers import Handlers, JobHandler, Joiner, Staging
from workers.processing.sentiment_map import DEFAULT_SENTIMENT_MAP
from workers.processing.worker import SerWorker, SttWorker


def make_handlers(store=None, bus=None, *, stt=None, ser=None, diarizer=None, max_audio_seconds: float = 60,
                  sentiment_map=DEFAULT_SENTIMENT_MAP, **clock) -> Handlers:
    """An stt handler when ``stt`` is given, an ser handler when ``ser`` is, and the joiner;
    buckets "inbox", "staging", "results", topic "partials". ``clock=`` sets every handler's clock."""
    store = store if store is not None else MemoryBlobStore()
    staging = Staging(store, bus if bus is not None else MemoryBus(), "staging", "partials")
    handlers = Handlers(joiner=Joiner(store, "staging", "results", sentiment_map, **clock))
    if stt is not None:
        handlers.stt = JobHandler(SttWorker(stt), staging, max_audio_seconds, **clock)
    if ser is not None:
        handlers.ser = JobHandler(SerWorker(ser, diarizer, speech=speech_regions), staging, max_audio_seconds, **clock)
    return handlers
