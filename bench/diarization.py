"""Who spoke when, scored against human references with ``pyannote.metrics``.

    python -m bench diarization                      every system, every file
    python -m bench diarization --system pyannote    one system (pyannote, resemblyzer, vad-one-speaker)
    python -m bench diarization --split test         only the files no threshold was chosen on

Two sets of recordings, each cut in two halves: ``tune`` (thresholds are chosen on it) and
``test`` (reported, never tuned on):

* ``ami``: the six 30 s AMI meeting excerpts in ../shared/external/ami-excerpts (2-4 speakers,
  0-44 % overlapped speech) with their human reference turns (RTTM).
* ``assembled``: conversations joined from clean clips of different readers (LJ Speech, the two
  Harvard-sentence speakers, JFK, TIMIT, …) at one loudness. The reference is each clip's own
  extent, trimmed of its leading and trailing silence by a plain energy threshold: never from the
  VAD that a diarizer uses.

Figures: DER at collar 0 and at ±0.25 s (``DiarizationErrorRate(collar=0.5)``: pyannote's collar is
the total width), overlapped speech scored, split into missed speech, false alarm and speaker
confusion; JER; the number of speakers found against the reference's; x real time of the
diarizer alone by the wall clock (x RT; the machine's load distorts it) and by the
process's CPU time (x CPU: audio seconds per CPU second, all threads together). Pooled figures add up every
file's error seconds over every file's reference seconds, as pyannote.metrics' ``abs(metric)``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.corpus import EXTERNAL, require_external
from workers.processing.audio import SAMPLE_RATE, decode

AMI = "ami-excerpts"
# Half of the AMI excerpts to choose thresholds on, half to report: each half has a 2-speaker
# file, 3- or 4-speaker files, and low and high overlap.
AMI_FILES = {
    "ami-EN2001a-0-30s": "tune",   # 3 speakers, 20 % overlap
    "ami-EN2006a-0-30s": "tune",   # 4 speakers, 27 %
    "ami-pyannote-trn03": "tune",  # 2 speakers, 0.3 %
    "ami-ES2003a-0-30s": "test",   # 2 speakers, 5 %
    "ami-EN2003a-0-30s": "test",   # 3 speakers, 16 %
    "ami-EN2009b-0-30s": "test",   # 3 speakers, 44 %
}
VOICES = {
    "LJ": [f"coqui-ljspeech/LJ001-000{i}.wav" for i in range(1, 9)],
    "H1": [f"speechbrain-samples/spk1_snt{i}.wav" for i in range(1, 6)],
    "H2": [f"speechbrain-samples/spk2_snt{i}.wav" for i in range(1, 6)],
    "JFK": ["fw-tests/jfk.flac"],
    "TIMIT": ["deepspeech-smoke/LDC93S1.wav"],
    "EX": ["speechbrain-samples/example1.wav"],
}
# (name, turns as "speaker[:seconds]" where seconds cuts the clip short, pause between turns (negative: the
# next turn starts that much before this one ends, both heard at once), split); "phone" in a name: telephone band
CONVERSATIONS = [
    ("two readers, pauses", "LJ H1 LJ H1 LJ H1", 0.6, "tune"),
    ("two readers, back to back", "H1 H2 H1 H2 H1 H2", 0.0, "test"),
    ("short turns (1.2 s)", "LJ H2:1.2 LJ H2:1.2 LJ H2:1.2", 0.3, "tune"),
    ("three speakers", "LJ H1 H2 LJ H1 H2", 0.4, "test"),
    ("four speakers, short", "H1 TIMIT H2:1.4 EX H1:1.3 TIMIT", 0.3, "test"),
    ("speech and reading", "JFK LJ JFK LJ", 0.5, "tune"),
    ("one speaker", "LJ LJ LJ LJ", 0.5, "test"),
    ("phone call, overlapping", "H1 H2 H1 H2 H1 H2 H1 H2", -0.4, "test"),
]
SYSTEMS = ("pyannote", "resemblyzer", "vad-one-speaker")
Turns = list[tuple[float, float, str]]


@dataclass(frozen=True)
class Recording:
    name: str
    corpus: str
    split: str
    audio: np.ndarray
    reference: Turns

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def read_rttm(path: Path) -> Turns:
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            turns.append((start, start + duration, fields[7]))
    return turns


def ami_recordings() -> list[Recording]:
    folder = EXTERNAL / AMI
    return [Recording(stem, "ami", split, decode(folder / f"{stem}.flac", max_seconds=600).samples,
                      read_rttm(folder / f"{stem}.rttm")) for stem, split in AMI_FILES.items()]


def clip(name: str, k: int) -> np.ndarray:
    audio = decode(EXTERNAL / VOICES[name][k % len(VOICES[name])], max_seconds=600).samples
    return (audio * (0.08 / (np.sqrt(np.mean(audio ** 2)) + 1e-9))).astype(np.float32)


def trimmed(audio: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """The clip from its first to its last 10 ms frame within ``floor_db`` of its loudest frame."""
    hop = SAMPLE_RATE // 100
    frames = audio[:len(audio) // hop * hop].reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > level.max() + floor_db)
    return audio[loud[0] * hop:(loud[-1] + 1) * hop] if len(loud) else audio[:0]


def assemble(turns: str, pause: float) -> tuple[np.ndarray, Turns]:
    """The clips in order with ``pause`` seconds between (a negative pause overlaps the next clip with the end of
    this one, the two added); each clip's own extent is its reference turn."""
    clips, reference, position, used = [], [], 0, {}
    for spec in turns.split():
        name, _, seconds = spec.partition(":")
        audio = trimmed(clip(name, used.get(name, 0)))
        used[name] = used.get(name, 0) + 1
        if seconds:
            audio = audio[:int(float(seconds) * SAMPLE_RATE)]
        reference.append((position / SAMPLE_RATE, (position + len(audio)) / SAMPLE_RATE, name))
        clips.append((position, audio))
        position = max(0, position + len(audio) + int(pause * SAMPLE_RATE))
    out = np.zeros(max(max(p + len(a) for p, a in clips), position), np.float32)
    for p, a in clips:
        out[p:p + len(a)] += a
    return out, reference


def telephone(audio: np.ndarray) -> np.ndarray:
    """The audio as a phone line carries it: 300-3400 Hz, sampled at 8 kHz and back to 16 kHz, 8-bit mu-law."""
    from scipy.signal import butter, resample_poly, sosfilt

    narrow = resample_poly(sosfilt(butter(4, (300, 3400), "bandpass", fs=SAMPLE_RATE, output="sos"), audio), 1, 2)
    peak = np.max(np.abs(narrow)) or 1.0
    mu = 255.0
    coded = np.round(np.sign(narrow / peak) * np.log1p(mu * np.abs(narrow / peak)) / np.log1p(mu) * 127) / 127
    narrow = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu * peak
    return resample_poly(narrow, 2, 1).astype(np.float32)[:len(audio)]


def assembled_recordings() -> list[Recording]:
    recordings = []
    for name, turns, pause, split in CONVERSATIONS:
        audio, reference = assemble(turns, pause)
        heard = telephone(audio) if "phone" in name else audio
        recordings.append(Recording(name, "assembled", split, heard, reference))
    return recordings


def annotation(turns: Turns, uri: str):
    from pyannote.core import Annotation, Segment

    out = Annotation(uri=uri)
    for k, (start, end, speaker) in enumerate(turns):
        if end > start:
            out[Segment(start, end), k] = speaker
    return out


@dataclass(frozen=True)
class Score:
    """Error seconds of one file (or pooled files) and the reference seconds they are out of."""
    total: float
    missed: float
    false_alarm: float
    confusion: float
    total_no_collar: float
    errors_no_collar: float
    jer: float
    speakers_found: int
    speakers_true: int

    @property
    def der(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.total if self.total else 0.0

    @property
    def der_no_collar(self) -> float:
        return self.errors_no_collar / self.total_no_collar if self.total_no_collar else 0.0


def score(reference: Turns, hypothesis: Turns, duration: float, uri: str = "file") -> Score:
    """DER with a ±0.25 s collar (parts) and without, JER, speaker counts; overlap scored; the
    whole recording (0 to ``duration``) is scored."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    ref, hyp = annotation(reference, uri), annotation(hypothesis, uri)
    uem = Timeline([Segment(0.0, duration)], uri=uri)
    collared = DiarizationErrorRate(collar=0.5, skip_overlap=False)(ref, hyp, uem=uem, detailed=True)
    exact = DiarizationErrorRate(collar=0.0, skip_overlap=False)(ref, hyp, uem=uem, detailed=True)
    jer = JaccardErrorRate(collar=0.0, skip_overlap=False)(ref, hyp, uem=uem) if len(ref.labels()) else 0.0
    return Score(collared["total"], collared["missed detection"], collared["false alarm"], collared["confusion"],
                 exact["total"], exact["missed detection"] + exact["false alarm"] + exact["confusion"], float(jer),
                 len({s for *_, s in hypothesis}), len({s for *_, s in reference}))


def pooled(scores: list[Score]) -> Score:
    return Score(*(sum(getattr(s, k) for s in scores) for k in ("total", "missed", "false_alarm", "confusion",
                                                                  "total_no_collar", "errors_no_collar")),
                 float(np.mean([s.jer for s in scores])) if scores else 0.0,
                 sum(s.speakers_found == s.speakers_true for s in scores), len(scores))


def system(name: str) -> Callable[[np.ndarray], Turns]:
    """A diarizer by name, as a function from mono 16 kHz audio to (start, end, speaker) turns."""
    if name == "vad-one-speaker":
        from workers.engines.diarization import speech_regions

        return lambda audio: [(a, b, "S1") for a, b in speech_regions(audio)]
    if name == "resemblyzer":
        from bench.resemblyzer_diarizer import ResemblyzerDiarizer as Diarizer
    else:
        from workers.engines.diarization import SpeakerDiarizer as Diarizer
    diarizer = Diarizer(device="cpu")
    return lambda audio: [(t.start, t.end, t.speaker) for t in diarizer.turns(audio)]


HEADER = (f"{'file':<28}{'split':>6}{'s':>6}{'spk':>6}{'missed':>8}{'f.alarm':>8}{'confus.':>8}"
          f"{'DER':>7}{'DER c0':>8}{'JER':>7}{'x RT':>7}{'x CPU':>7}")


def line(name: str, split: str, seconds: float, s: Score, speed: float, cpu_speed: float,
         count: str | None = None) -> str:
    t = s.total or 1.0
    return (f"{name:<28}{split:>6}{seconds:>6.0f}{count or f'{s.speakers_found}/{s.speakers_true}':>6}"
            f"{s.missed / t:>8.1%}{s.false_alarm / t:>8.1%}{s.confusion / t:>8.1%}{s.der:>7.1%}"
            f"{s.der_no_collar:>8.1%}{s.jer:>7.1%}{speed:>7.0f}{cpu_speed:>7.0f}")


def run(name: str, recordings: list[Recording]) -> None:
    diarize = system(name)
    diarize(recordings[0].audio[:5 * SAMPLE_RATE])  # warm-up: the first call loads kernels
    print(f"\n== {name}\n{HEADER}")
    results: list[tuple[Recording, Score, float, float]] = []
    for r in recordings:
        t0, c0 = time.perf_counter(), time.process_time()
        hypothesis = diarize(r.audio)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = score(r.reference, hypothesis, r.seconds, r.name)
        results.append((r, s, seconds, cpu))
        print(line(r.name[:28], r.split, r.seconds, s, r.seconds / seconds, r.seconds / cpu), flush=True)
    for corpus in ("ami", "assembled"):
        for split in ("tune", "test", "all"):
            chosen = [x for x in results if x[0].corpus == corpus and split in (x[0].split, "all")]
            if chosen:
                p = pooled([x[1] for x in chosen])
                audio = sum(x[0].seconds for x in chosen)
                wall, cpu = sum(x[2] for x in chosen), sum(x[3] for x in chosen)
                print(line(f"{corpus} (pooled)", split, audio, p, audio / wall, audio / cpu,
                           f"{p.speakers_found}/{p.speakers_true}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench diarization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=SYSTEMS, action="append", help="default: all")
    parser.add_argument("--split", choices=("tune", "test", "all"), default="all")
    parser.add_argument("--corpus", choices=("ami", "assembled", "all"), default="all")
    args = parser.parse_args(argv)
    require_external()
    recordings = [r for r in (ami_recordings() if args.corpus != "assembled" else [])
                  + (assembled_recordings() if args.corpus != "ami" else [])
                  if args.split in (r.split, "all")]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: x RT is distorted by other work. "
          "spk: speakers found/true (pooled: files with the right count/files). DER: ±0.25 s collar, "
          "DER c0: no collar; overlap scored in both.")
    for name in args.system or SYSTEMS:
        run(name, recordings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
