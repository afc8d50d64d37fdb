"""Benchmark the pipeline on generated 3- and 15-minute speech files and print ratios.

    python -m bench                     tiny.en STT; the default whisper-head SER and a production-size one
    python -m bench --stt base          the default multilingual base STT
    python -m bench --minutes 3         only the 3-minute file
    python -m bench faults              the fault campaign (bench/faults.py)
    python -m bench diarization         who spoke when against human references (bench/diarization.py)
    python -m bench peers               this STT engine against faster-whisper, openai-whisper,
                                        WhisperX on real speech (see bench/peers.py)
    python -m bench throughput          `run` over folders of short, hostile and long files, 1..N
                                        jobs: files/s, x real time, STT p50/p95/max, peak RSS

Each case runs in its own process: STT alone, SER alone, then the full local pipeline
(STT ∥ SER → joiner) on the same file; the overlap comes from the recorded start/end
times of the two partials. Targets (2-core machine): STT ≥ 20× real time with tiny.en on
3 min; the default whisper-head SER ≥ 20× real time; peak RSS < 1.5 GB, growing < 1.3× from 3 to
15 min. On 2 cores STT and SER (which also diarizes) compete for the same CPUs, so the local
pipeline takes about their sum (pipe/sum near 1, pipe/max 1.5-2; docs/benchmarks.md): running
them at once gains little there, and in the cloud they run on separate GPUs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from workers.processing.audio import SAMPLE_RATE, decode
from workers.setup.models import SER_WHISPER_HEAD, WHISPER_BASE, WHISPER_TINY_EN, build_random_ser, setup_models
from workers.core.settings import REPO_ROOT, Settings

OUT = REPO_ROOT / "bench" / "out"
SAMPLES = REPO_ROOT / "samples"


def speech_file(minutes: int) -> Path:
    """Spoken samples with pauses of 0.5–4 s, repeated to length; FLAC, made once."""
    import av

    path = OUT / f"speech_{minutes}min.flac"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    clips = [decode(p, max_seconds=600).samples for p in sorted(SAMPLES.glob("en_*.flac"))]
    rng = np.random.default_rng(minutes)
    parts, total, target = [], 0, minutes * 60 * SAMPLE_RATE
    while total < target:
        clip = clips[int(rng.integers(len(clips)))]
        pause = np.zeros(int(rng.uniform(0.5, 4.0) * SAMPLE_RATE), dtype=np.float32)
        parts += [clip, pause]
        total += len(clip) + len(pause)
    audio = (np.clip(np.concatenate(parts)[:target], -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        for start in range(0, len(audio), 4096):
            frame = av.AudioFrame.from_ndarray(audio[None, start:start + 4096], format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def run_case(audio: Path, stt_model: Path, ser: tuple[str, Path], threads: tuple[int, int]) -> dict:
    cmd = [sys.executable, "-m", "bench.one", str(audio), "--stt-model", str(stt_model), "--ser-engine", ser[0],
           "--ser-model", str(ser[1]), "--stt-threads", str(threads[0]), "--ser-threads", str(threads[1])]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stt", choices=["tiny.en", "base"], default="tiny.en", help="STT model (default tiny.en)")
    parser.add_argument("--ser", choices=["head", "large", "both"], default="both",
                        help="SER model: the default whisper-head, a production-size random Wav2Vec2-large "
                             "(transformers engine), or both")
    parser.add_argument("--minutes", type=int, nargs="+", default=[3, 15], help="file lengths (default 3 15)")
    parser.add_argument("--threads", type=int, nargs=2, default=(0, 0), metavar=("STT", "SER"),
                        help="CPU threads for STT and SER (0: every CPU for CTranslate2, torch's default)")
    args = parser.parse_args()

    models = Path(Settings.from_env().models.models_dir)
    setup_models(models)
    stt_model = models / (WHISPER_TINY_EN if args.stt == "tiny.en" else WHISPER_BASE)
    sers = {}
    if args.ser in ("head", "both"):
        sers["head"] = ("whisper-head", models / SER_WHISPER_HEAD)
    if args.ser in ("large", "both"):
        sers["large"] = ("transformers", build_random_ser(OUT / "ser-wav2vec2-large-random", size="large"))

    header = (f"{'case':<22}{'audio':>7}{'STT x':>8}{'SER x':>8}{'STT s':>8}{'SER s':>8}{'pipe s':>8}"
              f"{'pipe/max':>9}{'pipe/sum':>9}{'overlap':>8}{'RSS MB':>8}")
    print(header)
    rss = {}
    for ser_name, ser in sers.items():
        for minutes in args.minutes:
            r = run_case(speech_file(minutes), stt_model, ser, tuple(args.threads))
            a = r["audio_seconds"]
            longest, both = max(r["stt_alone"], r["ser_alone"]), r["stt_alone"] + r["ser_alone"]
            shorter = min(r["stt_in_pipeline"], r["ser_in_pipeline"])
            rss[(ser_name, minutes)] = r["peak_rss_mb"]
            print(f"{args.stt + '/' + ser_name + f' {minutes}min':<22}{a:>7.0f}{a / r['stt_alone']:>8.1f}"
                  f"{a / r['ser_alone']:>8.1f}{r['stt_alone']:>8.1f}{r['ser_alone']:>8.1f}{r['pipeline']:>8.1f}"
                  f"{r['pipeline'] / longest:>9.2f}{r['pipeline'] / both:>9.2f}"
                  f"{r['overlap'] / shorter if shorter else 0:>8.0%}{r['peak_rss_mb']:>8.0f}", flush=True)
    for ser_name in sers:
        if (ser_name, 3) in rss and (ser_name, 15) in rss:
            print(f"peak RSS growth 3 -> 15 min ({ser_name} SER): {rss[(ser_name, 15)] / rss[(ser_name, 3)]:.2f}x")
    print("SER includes diarization (the SER service's work). STT x / SER x: audio seconds per second of "
          "compute alone; pipe/max: pipeline wall over the slower engine alone; pipe/sum: over both alone "
          "back to back; overlap: share of the shorter engine's time spent while the other ran.")


if __name__ == "__main__":
    if sys.argv[1:2] == ["faults"]:
        from bench.faults import main as faults

        sys.exit(faults(sys.argv[2:]))
    if sys.argv[1:2] == ["diarization"]:
        from bench.diarization import main as diarization

        sys.exit(diarization(sys.argv[2:]))
    if sys.argv[1:2] == ["throughput"]:
        from bench.throughput import main as throughput

        sys.exit(throughput(sys.argv[2:]))
    if sys.argv[1:2] == ["peers"]:
        from bench.peers import main as peers

        sys.exit(peers(sys.argv[2:]))
    main()
