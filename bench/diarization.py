"""Diarization error rate and speed on conversations assembled from real clips.

    python -m bench.diarization

Each conversation joins clips of different speakers in ../shared/external (LJ Speech, the two
Harvard-sentence speakers, JFK, TIMIT, …) at one loudness, so the true turns are known: with
pauses, back to back (no pause), with short turns (< 1.5 s, cut from longer clips) and with one
speaker only. DER = (missed speech + false alarm + speaker confusion) / reference speech, in 10 ms
frames (a frame where two speak counts twice), with a 0.25 s collar around every reference
boundary left unscored and the best one-to-one naming of found speakers. Last, the two-speaker stereo clip mixed to mono, scored
against each channel's own speech (the two talk at the same time there). Target: DER ≤ 15 %,
≥ 30× real time on the 2-core box.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.corpus import EXTERNAL, require_external
from workers.processing.audio import SAMPLE_RATE, decode
from workers.engines.diarization import SpeakerDiarizer, Turn, speech_regions

STEP = 0.01
COLLAR = 0.25
VOICES = {
    "LJ": [f"coqui-ljspeech/LJ001-000{i}.wav" for i in range(1, 9)],
    "H1": [f"speechbrain-samples/spk1_snt{i}.wav" for i in range(1, 6)],
    "H2": [f"speechbrain-samples/spk2_snt{i}.wav" for i in range(1, 6)],
    "JFK": ["fw-tests/jfk.flac"],
    "TIMIT": ["deepspeech-smoke/LDC93S1.wav"],
    "EX": ["speechbrain-samples/example1.wav"],
}
# (name, turns as "speaker[:seconds]" where seconds cuts the clip short, pause between turns)
CONVERSATIONS = [
    ("two readers, pauses", "LJ H1 LJ H1 LJ H1", 0.6),
    ("two readers, back to back", "H1 H2 H1 H2 H1 H2", 0.0),
    ("short turns (1.2 s)", "LJ H2:1.2 LJ H2:1.2 LJ H2:1.2", 0.3),
    ("three speakers", "LJ H1 H2 LJ H1 H2", 0.4),
    ("four speakers, short", "H1 TIMIT H2:1.4 EX H1:1.3 TIMIT", 0.3),
    ("speech and reading", "JFK LJ JFK LJ", 0.5),
    ("one speaker", "LJ LJ LJ LJ", 0.5),
]


def clip(name: str, k: int) -> np.ndarray:
    audio = decode(EXTERNAL / VOICES[name][k % len(VOICES[name])], max_seconds=600).samples
    return (audio * (0.08 / (np.sqrt(np.mean(audio ** 2)) + 1e-9))).astype(np.float32)


def assemble(turns: str, pause: float) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    parts, truth, position, used = [], [], 0, {}
    for spec in turns.split():
        name, _, seconds = spec.partition(":")
        audio = clip(name, used.get(name, 0))
        used[name] = used.get(name, 0) + 1
        if seconds:
            speech = speech_regions(audio)
            start = int(speech[0][0] * SAMPLE_RATE) if speech else 0
            audio = audio[start:start + int(float(seconds) * SAMPLE_RATE)]
        for a, b in speech_regions(audio) or [(0.0, len(audio) / SAMPLE_RATE)]:
            truth.append((position / SAMPLE_RATE + a, position / SAMPLE_RATE + b, name))
        gap = np.zeros(int(pause * SAMPLE_RATE), np.float32)
        parts += [audio, gap]
        position += len(audio) + len(gap)
    return np.concatenate(parts), truth


def der(truth: list[tuple[float, float, str]], found: list[Turn], duration: float) -> dict[str, float]:
    from scipy.optimize import linear_sum_assignment

    n = int(duration / STEP) + 1
    names = sorted({w for *_, w in truth})
    hyp_names = sorted({t.speaker for t in found})
    ref = np.zeros((len(names), n), bool)
    hyp = np.zeros((len(hyp_names), n), bool)
    scored = np.ones(n, bool)
    for a, b, w in truth:
        ref[names.index(w), int(a / STEP):int(b / STEP)] = True
        for edge in (a, b):
            scored[max(0, int((edge - COLLAR) / STEP)):int((edge + COLLAR) / STEP)] = False
    for t in found:
        hyp[hyp_names.index(t.speaker), int(t.start / STEP):int(t.end / STEP)] = True
    ref, hyp = ref[:, scored], hyp[:, scored]
    overlap = ref.astype(float) @ hyp.T.astype(float)
    rows, cols = linear_sum_assignment(-overlap) if len(hyp_names) else ([], [])
    correct = np.zeros(ref.shape[1])
    for r, c in zip(rows, cols):
        correct += ref[r] & hyp[c]
    n_ref, n_hyp = ref.sum(0), hyp.sum(0)
    total = n_ref.sum()
    missed = np.maximum(0, n_ref - n_hyp).sum()
    false_alarm = np.maximum(0, n_hyp - n_ref).sum()
    confusion = (np.minimum(n_ref, n_hyp) - correct).sum()
    return {"missed": missed / total, "false_alarm": false_alarm / total, "confusion": confusion / total,
            "der": (missed + false_alarm + confusion) / total}


def main() -> None:
    argparse.ArgumentParser(prog="python -m bench.diarization", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    require_external()
    diarizer = SpeakerDiarizer(device="cpu")
    diarizer.turns(clip("LJ", 0))  # warm-up
    print(f"{'conversation':<30}{'audio s':>8}{'speakers':>10}{'missed':>8}{'f.alarm':>8}{'confus.':>8}{'DER':>7}{'x RT':>7}")
    sums = np.zeros(4)
    audio_total = compute_total = 0.0
    for name, turns, pause in CONVERSATIONS:
        audio, truth = assemble(turns, pause)
        t0 = time.perf_counter()
        found = diarizer.turns(audio)
        seconds = time.perf_counter() - t0
        score = der(truth, found, len(audio) / SAMPLE_RATE)
        weight = sum(b - a for a, b, _ in truth)
        sums += weight * np.array([score[k] for k in ("missed", "false_alarm", "confusion", "der")])
        audio_total += len(audio) / SAMPLE_RATE
        compute_total += seconds
        true_speakers = len({w for *_, w in truth})
        print(f"{name:<30}{len(audio) / SAMPLE_RATE:>8.1f}{f'{len({t.speaker for t in found})}/{true_speakers}':>10}"
              f"{score['missed']:>8.1%}{score['false_alarm']:>8.1%}{score['confusion']:>8.1%}{score['der']:>7.1%}"
              f"{len(audio) / SAMPLE_RATE / seconds:>7.0f}")
    speech_total = sum(sum(b - a for a, b, _ in assemble(t, p)[1]) for _, t, p in CONVERSATIONS)
    missed, false_alarm, confusion, total = sums / speech_total
    print(f"{'all (speech-weighted)':<30}{audio_total:>8.1f}{'':>10}{missed:>8.1%}{false_alarm:>8.1%}"
          f"{confusion:>8.1%}{total:>7.1%}{audio_total / compute_total:>7.0f}")
    stereo = decode(EXTERNAL / "fw-tests/stereo_diarization.wav", max_seconds=60, keep_channels=True)
    truth = [(a, b, f"channel {c}") for c, signal in enumerate(stereo.channels) for a, b in speech_regions(signal)]
    found = diarizer.turns(stereo.samples)
    score = der(truth, found, stereo.duration)
    print(f"\nstereo_diarization.wav mixed to mono (the two talk at once): {len({t.speaker for t in found})} speakers "
          f"found of 2, DER {score['der']:.1%} (missed {score['missed']:.1%}, confusion {score['confusion']:.1%}); "
          "split per channel (CHANNEL_MODE=auto) it needs no diarization")


if __name__ == "__main__":
    main()
