"""Real English speech with references, read from ``../shared/external`` (never copied here).

Public recordings other projects ship (LJ Speech, JFK, TIMIT, Harvard sentences; see each
folder's MANIFEST.md), joined with pauses and repeated. Left out:
four Harvard clips whose repository transcript is not what is said (their MANIFEST says so;
a WER against them measures the reference), the two-speaker stereo clip (overlap unknown)
and the English/German clip (its reference is a small model's output).
"""

from __future__ import annotations

import numpy as np

from workers.processing.audio import SAMPLE_RATE, decode
from workers.core.settings import REPO_ROOT

EXTERNAL = REPO_ROOT.parent / "shared" / "external"

ENGLISH_CLIPS = (
    *(f"coqui-ljspeech/LJ001-000{i}.wav" for i in range(1, 9)),
    "speechbrain-samples/LJ050-0131.wav",
    "fw-tests/jfk.flac",
    "deepspeech-smoke/LDC93S1.wav",
    "deepspeech-smoke/new-home-in-the-stars-16k.wav",
    "speechbrain-samples/example1.wav",
    "speechbrain-samples/spk1_snt1.wav",
    "speechbrain-samples/spk1_snt3.wav",
    "speechbrain-samples/spk1_snt4.wav",
    "speechbrain-samples/spk1_snt5.wav",
    "speechbrain-samples/spk2_snt2.wav",
    "speechbrain-samples/spk2_snt4.wav",
    "uberi-sr/english.wav",
)


def require_external() -> None:
    """Stop a bench run that needs the recordings where they are absent."""
    if not EXTERNAL.is_dir():
        raise SystemExit(f"{EXTERNAL} is absent: the recordings live in ../shared/external beside the project")


class Missing(RuntimeError):
    """``../shared/external`` is not beside this checkout (a user's clone)."""


def clip(name: str) -> tuple[np.ndarray, str]:
    """One recording, decoded to 16 kHz mono, and its reference text."""
    path = EXTERNAL / name
    if not path.is_file():
        raise Missing(f"{path} is missing: the real recordings live in ../shared/external beside the repository")
    return decode(path, max_seconds=600).samples, path.with_suffix(".txt").read_text(encoding="utf-8").strip()


def english_speech(repeats: int = 2, pause_seconds: float = 1.0) -> tuple[np.ndarray, str]:
    """Every English clip, ``pause_seconds`` apart, ``repeats`` times; audio and reference."""
    clips = [clip(name) for name in ENGLISH_CLIPS]
    pause = np.zeros(int(pause_seconds * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([part for _ in range(repeats) for samples, _ in clips for part in (samples, pause)])
    return audio, " ".join(text for _ in range(repeats) for _, text in clips)



# RAVDESS statement codes (the 5th field of a file name) and what the actors say.
RAVDESS_SENTENCES = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}


def repeated_sentences(clips: int = 60) -> tuple[np.ndarray, str]:
    """``clips`` RAVDESS clips joined as they are (each with its own pauses), every
    ``448 // clips``-th in name order: two sentences said again and again by 16 actors, as
    acted corpora and calls that repeat a phrase are (issue 21; 216.5 s for 60). Audio and
    reference."""
    folder = EXTERNAL / "ravdess" / "audio"
    if not folder.is_dir():
        raise Missing(f"{folder} is missing: the real recordings live in ../shared/external beside the repository")
    names = sorted(folder.glob("*.flac"))
    chosen = names[:: max(1, len(names) // clips)][:clips]
    audio = np.concatenate([decode(path, max_seconds=60).samples for path in chosen])
    return audio, " ".join(RAVDESS_SENTENCES[path.name.split("-")[4]] for path in chosen)
