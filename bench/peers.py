"""This project's STT engine against its peers, on the same real speech and the same model.

    python -m bench peers                       every peer once on the real English corpus
    python -m bench peers --runs 3              three rounds, ranges printed
    python -m bench peers --repeats 1           the corpus once (116 s), for the slow engines
    python -m bench peers --file call.flac      another file (no reference: WER is not shown)
    python -m bench peers --corpus repeated     60 RAVDESS clips joined: the same two sentences again and again

The audio is ``bench.corpus.english_speech()``: real recordings from ../shared/external with
their references, 1 s apart, twice (about 232 s). Every engine runs Whisper base (the
CTranslate2 model set-up builds; for openai-whisper, its conversion ``whisper-base-openai.pt``),
beam 5, word timestamps, the same CPU threads, in a fresh process of its own (peak RSS is its
own), timed after a 5 s warm-up. WER uses Whisper's English normaliser (``bench.wer``) and is
printed as the range over the runs with the number of reference words: an engine can drop a
whole clip in one run and not the next, and on a few thousand words a few words are noise, so
one engine is said to have a lower WER only when its range lies below the other's. Speech
coverage is the share of VAD's speech that the engine's words cover (``Coverage.of`` in
``workers.engines.coverage``): this engine's own measure, which it maximises when it chooses
between decodes of a window, so it favours this engine by construction.

Peers: faster-whisper sequential (``WhisperModel.transcribe``, ``vad_filter``) and batched
(``BatchedInferencePipeline``, batch 8), openai-whisper as the library runs it, and WhisperX
when it is installed (``pip install whisperx`` into a separate environment: it is no project
requirement, and it brings its own torch and pyannote; batch 8, its bundled VAD, no alignment).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from workers.processing.audio import SAMPLE_RATE
from workers.core.contracts import Segment

THIS = "this engine"
PEERS = (THIS, "faster-whisper sequential", "faster-whisper batched", "openai-whisper", "whisperx")
WARM_UP_SECONDS = 5


def _result(segments: list[Segment]) -> tuple[str, list[Segment]]:
    return " ".join(s.text for s in segments), segments


def _engine(name: str, models: Path, threads: int, batch: int, beam: int,
            block: float) -> Callable[[np.ndarray], tuple]:
    """A function from audio to (text, segments or None) for one peer, its model loaded."""
    from workers.engines.stt import FasterWhisperEngine, decoded_segment
    from workers.setup.models import WHISPER_BASE, WHISPER_BASE_OPENAI

    ct2 = models / WHISPER_BASE
    if name == THIS:
        engine = FasterWhisperEngine(ct2, device="cpu", batch_size=batch, beam_size=beam, cpu_threads=threads,
                                     block_seconds=block)
        return lambda audio: _result(engine.transcribe(audio).segments)
    if name.startswith("faster-whisper"):
        import faster_whisper

        model = faster_whisper.WhisperModel(str(ct2), device="cpu", compute_type="int8", cpu_threads=threads)
        pipeline = faster_whisper.BatchedInferencePipeline(model) if name.endswith("batched") else None

        def run(audio: np.ndarray) -> tuple:
            if pipeline is not None:
                found, _ = pipeline.transcribe(audio, batch_size=batch, beam_size=beam, word_timestamps=True)
            else:
                found, _ = model.transcribe(audio, beam_size=beam, word_timestamps=True, vad_filter=True)
            return _result([decoded_segment(s.start, s.end, s.text, s.avg_logprob, s.no_speech_prob,
                                            [(w.start, w.end, w.word, w.probability) for w in s.words or []])
                            for s in found])
        return run
    if name == "openai-whisper":
        import torch
        import whisper

        torch.set_num_threads(threads)
        model = whisper.load_model(str(models / WHISPER_BASE_OPENAI), device="cpu")

        def run(audio: np.ndarray) -> tuple:
            found = model.transcribe(audio, beam_size=beam, word_timestamps=True, fp16=False, verbose=None)
            return _result([decoded_segment(s["start"], s["end"], s["text"], s["avg_logprob"], s["no_speech_prob"],
                                            [(w["start"], w["end"], w["word"], w["probability"]) for w in s["words"]])
                            for s in found["segments"]])
        return run
    if name == "whisperx":
        import whisperx

        model = whisperx.load_model(str(ct2), device="cpu", compute_type="int8", threads=threads,
                                    asr_options={"beam_size": beam})

        def run(audio: np.ndarray) -> tuple:
            found = model.transcribe(audio, batch_size=batch)
            return " ".join(s["text"].strip() for s in found["segments"]), None  # no words without alignment
        return run
    raise ValueError(f"unknown engine {name!r}; one of {PEERS}")


def _child(args: argparse.Namespace) -> None:
    from bench.corpus import english_speech
    from bench.wer import normalise, word_error_rate
    from workers.processing.audio import decode
    from workers.engines.coverage import coverage_of, speech_regions

    if args.file:
        audio, reference = decode(Path(args.file), max_seconds=14_400).samples, None
    elif args.corpus == "repeated":
        from bench.corpus import repeated_sentences

        audio, reference = repeated_sentences()
    else:
        audio, reference = english_speech(repeats=args.repeats)
    transcribe = _engine(args.child, Path(args.models_dir), args.threads, args.batch_size, args.beam_size,
                         args.block_seconds)
    transcribe(audio[: WARM_UP_SECONDS * SAMPLE_RATE])
    started = time.perf_counter()
    text, segments = transcribe(audio)
    seconds = time.perf_counter() - started
    coverage = coverage_of(speech_regions(audio), segments).share if segments is not None else None
    print(json.dumps({
        "audio_seconds": len(audio) / SAMPLE_RATE,
        "seconds": seconds,
        "wer": word_error_rate(reference, text) if reference else None,
        "words": len(normalise(reference).split()) if reference else None,
        "coverage": coverage,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def _span(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if format(low, fmt) == format(high, fmt) else f"{low:{fmt}}–{high:{fmt}}"


def main(argv: list[str]) -> None:
    from workers.core.settings import REPO_ROOT, Settings

    parser = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="rounds over every engine (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every engine (default 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the batched engines (default 8)")
    parser.add_argument("--beam-size", type=int, default=5, help="beam size (default 5)")
    parser.add_argument("--block-seconds", type=float, default=120.0,
                        help="this engine's STT_BLOCK_SECONDS: the length of the blocks its voice activity "
                             "detection runs over (default 120)")
    parser.add_argument("--engines", nargs="+", choices=PEERS, default=list(PEERS), metavar="ENGINE",
                        help=f"which engines (default all): {', '.join(repr(p) for p in PEERS)}")
    parser.add_argument("--repeats", type=int, default=2, help="times the real corpus is read (default 2: 232 s)")
    parser.add_argument("--file", help="an audio file instead of the real English corpus (no WER then)")
    parser.add_argument("--corpus", choices=["english", "repeated"], default="english",
                        help="english: the real English corpus (default); repeated: 60 RAVDESS clips joined, two "
                             "sentences said again and again (216.5 s; bench.corpus.repeated_sentences)")
    parser.add_argument("--models-dir", default=None, help="MODELS_DIR (default: the setting)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    from workers.setup.models import setup_models

    args.models_dir = args.models_dir or Settings.from_env().models.models_dir
    setup_models(Path(args.models_dir))
    engines = [e for e in args.engines if e != "whisperx" or importlib.util.find_spec("whisperx")]
    if "whisperx" in args.engines and "whisperx" not in engines:
        print("whisperx: not installed, left out (optional: pip install whisperx, best in an environment "
              "of its own; it is no project requirement)", file=sys.stderr)
    results: dict[str, list[dict]] = {e: [] for e in engines}
    for _ in range(args.runs):
        for engine in engines:  # interleaved, so a busy minute on a shared machine hits every engine
            cmd = [sys.executable, "-m", "bench", "peers", "--child", engine, "--models-dir", str(args.models_dir),
                   "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                   "--beam-size", str(args.beam_size), "--block-seconds", str(args.block_seconds),
                   "--repeats", str(args.repeats), "--corpus", args.corpus]
            cmd += ["--file", args.file] if args.file else []
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
            if out.returncode:
                sys.exit(f"{engine} failed:\n{out.stderr[-3000:]}")
            results[engine].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {engine}: {results[engine][-1]}", file=sys.stderr, flush=True)

    audio, words = results[engines[0]][0]["audio_seconds"], results[engines[0]][0].get("words")
    print(f"{audio:.0f} s of audio" + (f" ({words} reference words)" if words else "") + ", Whisper base, int8 "
          f"(CTranslate2), beam {args.beam_size}, {args.threads} threads, batches of {args.batch_size}, "
          f"{args.runs} run(s); ranges are min–max over the runs")
    print(f"{'engine':<28}{'RTF x':>12}{'WER':>14}{'coverage*':>16}{'peak RSS MB':>14}{'speed / this':>14}"
          f"{'WER - this':>12}{'RSS / this':>12}")
    mine = results.get(THIS)
    for engine, runs in results.items():
        rtf = [r["audio_seconds"] / r["seconds"] for r in runs]
        wer = [r["wer"] for r in runs if r["wer"] is not None]
        cover = [r["coverage"] for r in runs if r["coverage"] is not None]
        rss = [r["peak_rss_mb"] for r in runs]
        line = (f"{engine:<28}{_span(rtf, '.1f'):>12}{_span(wer, '.3f') if wer else '-':>14}"
                f"{_span(cover, '.1%') if cover else '-':>16}{_span(rss, '.0f'):>14}")
        if mine:
            # Ratios within a round: both engines ran minutes apart under the same load.
            speed = [(r["audio_seconds"] / r["seconds"]) / (m["audio_seconds"] / m["seconds"])
                     for r, m in zip(runs, mine)]
            dwer = [r["wer"] - m["wer"] for r, m in zip(runs, mine) if r["wer"] is not None and m["wer"] is not None]
            line += (f"{_span(speed, '.2f'):>14}{_span(dwer, '+.3f') if dwer else '-':>12}"
                     f"{_span([r['peak_rss_mb'] / m['peak_rss_mb'] for r, m in zip(runs, mine)], '.2f'):>12}")
        print(line)
    print("RTF x: audio seconds per second of compute; speed / this: that engine's RTF over this engine's "
          "(below 1: slower); coverage*: share of VAD's speech that the words cover, the measure this engine "
          "maximises when it chooses a decode, so it favours this engine (WhisperX without alignment gives no "
          "words).")
    if mine:
        for engine, runs in results.items():
            if engine != THIS:
                print(f"WER, this engine against {engine}: {compare_wer(mine, runs)}")
    sequential = results.get("faster-whisper sequential")
    if mine and sequential:
        print(_verdict(mine, sequential))


def compare_wer(mine: list[dict], theirs: list[dict]) -> str:
    """"lower" or "higher" only when the two ranges over the runs do not overlap."""
    a = [r["wer"] for r in mine if r.get("wer") is not None]
    b = [r["wer"] for r in theirs if r.get("wer") is not None]
    if not a or not b:
        return "no reference, no WER"
    words = mine[0].get("words")
    spans = (f"{_span(a, '.3f')} against {_span(b, '.3f')} over {len(a)} and {len(b)} run(s)"
             + (f" of {words} words" if words else ""))
    if max(a) < min(b):
        return f"lower ({spans})"
    if min(a) > max(b):
        return f"higher ({spans})"
    return f"no difference shown: the ranges overlap ({spans})"


TARGET_SPEED, TARGET_WER_MARGIN, TARGET_COVERAGE = 1.5, 0.005, 0.99


def _verdict(mine: list[dict], sequential: list[dict]) -> str:
    """The targets against sequential decoding (TARGET_*), round by round: the worst round counts."""
    speed = min((m["audio_seconds"] / m["seconds"]) / (s["audio_seconds"] / s["seconds"])
                for m, s in zip(mine, sequential))
    met = {True: "met", False: "NOT met"}
    checks = [f"speed {speed:.2f}x sequential (target >= {TARGET_SPEED}x): {met[speed >= TARGET_SPEED]}"]
    if all(r["wer"] is not None for r in mine + sequential):
        margin = max(m["wer"] - s["wer"] for m, s in zip(mine, sequential))
        checks.append(f"WER {margin:+.3f} against sequential (target <= +{TARGET_WER_MARGIN}): "
                      f"{met[margin <= TARGET_WER_MARGIN]}")
    coverage = min(r["coverage"] for r in mine)
    checks.append(f"speech coverage {coverage:.1%} (target >= {TARGET_COVERAGE:.0%}): "
                  f"{met[coverage >= TARGET_COVERAGE]}")
    return "worst round: " + "; ".join(checks)
