"""Speakers on real recordings in ../shared/external: diarization of joined readers, a two-channel call."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.external_data import external
from workers.composition import Root
from workers.processing.audio import SAMPLE_RATE, decode
from workers.engines.diarization import SpeakerDiarizer
from workers.processing.local_run import run_folder

READERS = {
    "LJ": ["coqui-ljspeech/LJ001-0001.wav", "coqui-ljspeech/LJ001-0002.wav", "coqui-ljspeech/LJ001-0003.wav"],
    "B": [f"speechbrain-samples/spk1_snt{i}.wav" for i in (1, 2, 3)],
    "C": [f"speechbrain-samples/spk2_snt{i}.wav" for i in (1, 2, 3)],
}


def conversation(order: str) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Clips of the readers in ``order`` (e.g. "LJ B LJ B"), at one level, with 0.6 s pauses."""
    parts, truth, position, used = [], [], 0, {k: 0 for k in READERS}
    for who in order.split():
        audio = decode(external(READERS[who][used[who]]), max_seconds=60).samples
        used[who] += 1
        audio = audio * (0.08 / np.sqrt(np.mean(audio ** 2)))
        truth.append((position / SAMPLE_RATE, (position + len(audio)) / SAMPLE_RATE, who))
        parts += [audio, np.zeros(int(0.6 * SAMPLE_RATE), np.float32)]
        position += len(audio) + int(0.6 * SAMPLE_RATE)
    return np.concatenate(parts).astype(np.float32), truth


def speaker_error(truth, turns) -> float:
    """Share of the reference speech given to the wrong speaker, under the best one-to-one naming."""
    from scipy.optimize import linear_sum_assignment

    step = 0.01
    names = sorted({w for *_, w in truth})
    found = sorted({t.speaker for t in turns})
    overlap = np.zeros((len(names), len(found)))
    total = 0.0
    for start, end, who in truth:
        total += end - start
        for t in turns:
            overlap[names.index(who), found.index(t.speaker)] += max(0.0, min(end, t.end) - max(start, t.start))
    rows, cols = linear_sum_assignment(-overlap)
    return 1 - overlap[rows, cols].sum() / max(total, step)


@pytest.fixture(scope="module")
def diarizer() -> SpeakerDiarizer:
    return SpeakerDiarizer(device="cpu")


@pytest.mark.parametrize("order, speakers", [("LJ B LJ B", 2), ("B C B C", 2), ("LJ B C LJ B C", 3), ("LJ LJ LJ", 1)])
def test_joined_readers_are_told_apart(diarizer, order: str, speakers: int) -> None:
    audio, truth = conversation(order)
    turns = diarizer.turns(audio)
    assert len({t.speaker for t in turns}) == speakers
    assert speaker_error(truth, turns) < 0.1
    assert turns[0].speaker == "S1"


def test_silence_has_no_speaker_and_bounds_are_kept(diarizer) -> None:
    assert diarizer.turns(np.zeros(5 * SAMPLE_RATE, np.float32)) == []
    audio, _ = conversation("LJ B C LJ B C")
    bounded = SpeakerDiarizer(device="cpu", max_speakers=2).turns(audio)
    assert len({t.speaker for t in bounded}) == 2


def test_a_two_channel_call_is_transcribed_per_channel(tmp_path, fast_settings) -> None:
    source = external("fw-tests/stereo_diarization.wav")
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    (inbox / "call.wav").write_bytes(source.read_bytes())
    settings = fast_settings.replace(channel_names="agent,customer")
    stack = Root.local(settings, inbox, results).local_stack()
    try:
        run_folder(stack, settings.input, progress=False)
    finally:
        stack.close()
    result = json.loads((results / "call.wav.json").read_text())
    assert result["channels"] == ["agent", "customer"]
    said = {name: " ".join(s["text"] for s in result["segments"] if s["speaker"] == name).lower()
            for name in ("agent", "customer")}
    assert "wizard" in said["agent"] and "horizon" not in said["agent"]
    assert "horizon" in said["customer"] and "wizard" not in said["customer"]
    assert [(s["speaker"], s["channel"]) for s in result["speakers"]] == [("agent", 0), ("customer", 1)]
    assert all(w["speaker"] == s["speaker"] for s in result["segments"] for w in s["words"])


def test_long_recordings_cluster_a_sample_and_give_every_embedding_a_speaker(diarizer, monkeypatch) -> None:
    from workers.engines import diarization

    monkeypatch.setattr(diarization, "MAX_CLUSTERED", 200)
    rng = np.random.default_rng(0)
    voices = rng.normal(size=(2, 256))
    who = np.array([i % 7 < 4 for i in range(1000)], dtype=int)
    embeddings = voices[who] + rng.normal(scale=0.3, size=(1000, 256))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = diarizer._cluster(embeddings)
    assert len(set(labels)) == 2
    assert len(set(zip(who, labels))) == 2, "each voice is one cluster"


def test_two_people_talking_at_once_give_overlapping_turns(diarizer) -> None:
    stereo = decode(external("fw-tests/stereo_diarization.wav"), max_seconds=60, keep_channels=True)
    turns = diarizer.turns(stereo.samples)
    assert len({t.speaker for t in turns}) == 2
    overlap = sum(max(0.0, min(a.end, b.end) - max(a.start, b.start))
                  for i, a in enumerate(turns) for b in turns[i + 1:] if a.speaker != b.speaker)
    assert overlap > 1.0, "the two channels' talkers overlap for seconds; mixed to mono the turns must too"


def test_noise_alone_gives_at_most_one_speaker_and_never_fails(diarizer) -> None:
    noise = np.random.default_rng(1).normal(scale=0.05, size=8 * SAMPLE_RATE).astype(np.float32)
    assert len({t.speaker for t in diarizer.turns(noise)}) <= 1
    assert len({t.speaker for t in diarizer.turns(noise[:SAMPLE_RATE // 10])}) <= 1  # shorter than one chunk


def test_voices_at_once_in_several_chunks_with_one_speaker_found_become_two_speakers(diarizer) -> None:
    from workers.engines.diarization import Unit

    frames = np.ones(589, bool)
    # in each of three chunks a voice with solo speech and two heard only over it (no solo speech)
    units = [Unit(c, k, 0, 589, k == 0, frames) for c in range(3) for k in range(3)]
    rng = np.random.default_rng(0)
    voice = rng.normal(size=192)
    embeddings = voice + rng.normal(scale=0.1, size=(9, 192))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = diarizer._clustered(units, embeddings)
    assert all(labels[3 * c] != labels[3 * c + 1] for c in range(3))
    assert len(set(labels)) == 2


def test_a_frame_goes_to_the_speaker_most_chunks_hear_there_not_to_one_chunk_alone(diarizer) -> None:
    from workers.engines.diarization import Chunks, Unit

    # five chunks over the same frames: one hears voice 0 there (a local speaker that runs on from
    # the voice before a pause), four hear voice 1; an average over the chunks that hear each voice
    # gave the frames to voice 0 (0.95 against 0.9), an average over all chunks gives them to voice 1
    frames, chunks = 100, 5
    soft = np.zeros((chunks, frames, 3), np.float32)
    soft[0, :, 0], soft[1:, :, 0] = 0.95, 0.9
    segmented = Chunks(np.zeros(chunks), soft > 0.5, soft, soft.max(axis=2))
    units = [Unit(c, 0, 0, frames, True, np.ones(frames, bool)) for c in range(chunks)]
    turns = diarizer._reconstructed(segmented, units, np.array([0, 1, 1, 1, 1]), frames * 0.0169)
    assert {t.speaker for t in turns} == {"1"}


def test_a_small_cluster_of_a_short_file_is_a_speaker_and_of_a_long_one_is_not(diarizer) -> None:
    rng = np.random.default_rng(2)
    voices = rng.normal(size=(2, 192))

    def found(many: int, few: int) -> int:
        who = np.array([0] * many + [1] * few)
        embeddings = voices[who] + rng.normal(scale=0.2, size=(len(who), 192))
        return len(set(diarizer._cluster(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True))))

    assert found(20, 4) == 2      # 4 of 24 embeddings: a speaker heard in a sixth of a short file
    assert found(400, 4) == 1     # 4 of 404: a stray few, not a speaker (pyannote's at most 12 and 10 %)


def test_music_alone_gives_at_most_one_speaker_and_never_fails(diarizer) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    notes = []
    for i in range(24):  # 12 s of chords with their overtones, a drum-like burst on every other one
        root = 220 * 2 ** (rng.integers(0, 12) / 12)
        note = sum(np.sin(2 * np.pi * f * h * t) / h for f in (root, root * 5 / 4, root * 3 / 2) for h in range(1, 6))
        note = note * np.exp(-3 * t) + (rng.normal(scale=0.5, size=len(t)) * np.exp(-40 * t) if i % 2 == 0 else 0)
        notes.append(note)
    music = np.concatenate(notes)
    assert len({t.speaker for t in diarizer.turns((0.1 * music / np.abs(music).max()).astype(np.float32))}) <= 1
