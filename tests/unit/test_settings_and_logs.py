"""Settings refuse values that would fail every job later; JSON logs carry UTC times."""

from __future__ import annotations

import json
import logging
import sys
import time

import pytest

from workers.core.errors import ConfigError
from workers.core.logs import CloudJsonFormatter, TextFormatter
from workers.core.settings import Settings


@pytest.mark.parametrize("env, value", [
    ("MAX_AUDIO_SECONDS", "nan"), ("STT_BEAM_SIZE", "0"), ("SER_BATCH_SIZE", "0"), ("STT_BATCH_SIZE", "-1"),
    ("STT_DEVICE", "gpu"), ("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "JSON"), ("SER_HOP_SECONDS", "inf"),
])
def test_a_value_that_would_fail_later_is_refused_naming_its_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        Settings.from_env({env: value})


@pytest.mark.parametrize("env, value", [("DIARIZATION", "maybe"), ("PUSH_AUTH", "2"), ("MIN_SPEAKERS", "many")])
def test_a_value_of_the_wrong_type_is_refused_naming_its_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        Settings.from_env({env: value})


def test_settings_come_in_sections_with_real_booleans_from_the_environment_and_options() -> None:
    s = Settings.from_env({"DIARIZATION": "off", "PUSH_AUTH": "on", "STT_BEAM_SIZE": "3", "GOOGLE_CLOUD_PROJECT": "p"},
                          id_tokens="false", ser_window_seconds=2.0)
    assert s.speakers.diarization is False and s.push.push_auth is True and s.api.id_tokens is False
    assert (s.stt.beam_size, s.ser.window_seconds, s.cloud.project) == (3, 2.0, "p")
    # Options win over the environment, and a change goes through the same checks.
    assert Settings.from_env({"STT_BEAM_SIZE": "3"}, stt_beam_size=4).stt.beam_size == 4
    with pytest.raises(ConfigError, match="SER_HOP_SECONDS"):
        s.replace(ser_hop_seconds=2.5)
    with pytest.raises(TypeError, match="stt_beam"):
        s.replace(stt_beam=1)
    # A section is frozen and hashable: the composition root caches engines by it.
    with pytest.raises(AttributeError):
        s.stt.beam_size = 1  # type: ignore[misc]
    assert hash(s.stt) == hash(Settings.from_env({}, stt_beam_size=3).stt)


def test_json_log_times_are_utc_whatever_the_time_zone(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        record.created = 1_790_000_000.25  # 2026-09-21T14:13:20.250Z
        entry = json.loads(CloudJsonFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert entry["time"] == "2026-09-21T14:13:20.250Z" and entry["severity"] == "INFO"


FORGED = ("calls/a.wav\n12:00:00 INFO workers.processing.handlers: result ok written to calls/b.wav.json"
          "\r\x00\x1b[2K\u2028")


def test_text_logs_escape_control_characters_so_a_name_cannot_forge_a_line() -> None:
    formatter = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    record = logging.LogRecord("workers.processing.handlers", logging.WARNING, __file__, 1, "stt failed: %s",
                               (FORGED,), None)
    record.job_id = "ab\ncdefgh"
    try:
        raise ValueError(f"cannot read {FORGED}")
    except ValueError:
        failed = logging.LogRecord("workers.entrypoints.http.app", logging.ERROR, __file__, 1,
                                   "unexpected failure on %s", (FORGED,), sys.exc_info())
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert "calls/a.wav\\n12:00:00 INFO" in line and "\\r\\x00\\x1b[2K\\u2028" in line
    first, *rest = formatter.format(failed).split("\n")
    assert first.endswith("unexpected failure on calls/a.wav\\n12:00:00 INFO workers.processing.handlers: result ok "
                          "written to calls/b.wav.json\\r\\x00\\x1b[2K\\u2028")
    assert rest and all(line.startswith("  ") for line in rest), "a traceback line could pass for an event"
