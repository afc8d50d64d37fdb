"""One benchmark case in a fresh process (so peak RSS belongs to it): prints one JSON line."""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from workers.composition import Root, configure_logging
from workers.core.contracts import Timing
from workers.processing.audio import decode
from workers.processing.local_run import RunSummary, process_one
from workers.core.settings import Settings


def _span(timing: Timing | None) -> tuple[float, float]:
    assert timing is not None, "the result has no timing"
    return (datetime.fromisoformat(timing.started_at).timestamp(),
            datetime.fromisoformat(timing.finished_at).timestamp())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("audio", type=Path)
    parser.add_argument("--stt-model", required=True)
    parser.add_argument("--ser-engine", default="whisper-head")
    parser.add_argument("--ser-model", required=True)
    parser.add_argument("--stt-threads", type=int, default=0)
    parser.add_argument("--ser-threads", type=int, default=0)
    args = parser.parse_args()
    settings = Settings.from_env(stt_model=args.stt_model, ser_engine=args.ser_engine, ser_model=args.ser_model,
                                 stt_cpu_threads=args.stt_threads, ser_cpu_threads=args.ser_threads)
    configure_logging(settings.log, default_level="WARNING")
    root = Root(settings)
    stt, ser, diarizer = root.stt_engine(), root.ser_engine(), root.diarizer()
    audio = decode(args.audio, max_seconds=settings.input.max_audio_seconds).samples
    duration = len(audio) / 16_000
    stt.transcribe(audio[: 16_000 * 5])  # warm-up: first-call allocations are not the steady state
    ser.classify(audio[: 16_000 * 5])
    if diarizer is not None:
        diarizer.turns(audio[: 16_000 * 5])

    t = time.perf_counter()
    stt.transcribe(audio)
    stt_alone = time.perf_counter() - t
    t = time.perf_counter()
    ser.classify(audio)  # the SER service's work: emotions, then who speaks when
    if diarizer is not None:
        diarizer.turns(audio)
    ser_alone = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        shutil.copy(args.audio, inbox / args.audio.name)
        stack = Root.local(settings, inbox, Path(tmp) / "results").local_stack()
        t = time.perf_counter()
        result = process_one(stack, stack.store.stat(stack.inbox_bucket, args.audio.name), RunSummary())
        pipeline = time.perf_counter() - t
        stack.close()
    assert result is not None, "the pipeline wrote no result"
    a, b = _span(result.timings.stt), _span(result.timings.ser)
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    print(json.dumps({
        "audio_seconds": duration,
        "stt_alone": stt_alone,
        "ser_alone": ser_alone,
        "pipeline": pipeline,
        "stt_in_pipeline": a[1] - a[0],
        "ser_in_pipeline": b[1] - b[0],
        "overlap": overlap,
        "segments": len(result.segments),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
