"""Emotion does not depend on the transcript: a voice that says no word (a laugh) is still scored."""

from __future__ import annotations

from tests.audio_factory import encode, laugh
from workers.composition import Root
from workers.core.contracts import Result, loads
from workers.engines.ser_head import HEAD_FILE, SerHead
from workers.processing.local_run import run_folder
from workers.setup.models import DEFAULT_HEAD


def test_a_laugh_with_no_transcribed_word_still_gets_its_emotion_from_the_speech_regions(base_settings,
                                                                                          tmp_path) -> None:
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    (inbox / "laugh.wav").write_bytes(encode(laugh()))
    stack = Root.local(base_settings, inbox, results).local_stack()
    try:
        summary = run_folder(stack, base_settings.input, progress=False)
    finally:
        stack.close()
    assert (summary.ok, summary.failed) == (1, 0)
    result = loads(Result, (results / "laugh.wav.json").read_text())
    written = " ".join(s.text for s in result.segments)
    assert not any(ch.isalnum() for ch in written), f"Whisper base writes no word for it, not {written!r}"
    assert result.turns, "the diarizer hears a voice"
    assert result.summary.emotion_from == "speech"
    assert result.summary.dominant_emotion in {s.label for s in result.summary.distribution}
    assert result.summary.speech_seconds > 3.0, "the voice's seconds, not the transcript's (none)"
    assert result.speakers and result.speakers[0].dominant_emotion is not None
    assert result.speakers[0].talk_seconds > 3.0
    stated = SerHead.load(DEFAULT_HEAD / HEAD_FILE).uncertain_below is not None
    assert (result.summary.uncertain_seconds is not None) == stated, "counted where the head states a threshold"
