"""The embedded default end to end: a folder of awkward files through the real models and handlers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from tests.audio_factory import random_bytes, SAMPLES, encode, noise, png_bytes, tone, zip_bytes
from workers.composition import Root
from workers.core.contracts import Result, dumps, from_dict, loads
from workers.core.jobs import make_job_id
from workers.processing.local_run import run_folder
from workers.core.settings import REPO_ROOT

SCHEMA = json.loads((REPO_ROOT / "schemas" / "result.schema.json").read_text())
SPEECH = (SAMPLES / "en_support_call.flac").read_bytes()

INVALID = {
    "empty.wav": b"",
    "random bytes.mp3": random_bytes(32 * 1024),
    "notes.txt": b"Meeting notes: nothing to hear.\n" * 40,
    "picture.png": png_bytes(),
    "archive.flac": zip_bytes(),
}
VALID = {
    "silence.wav": encode(tone(3.0, amplitude=0.0)),
    "tenth of a second.wav": encode(tone(0.1)),
    "hi-res 192k.wav": encode(tone(1.0, rate=192_000), rate=192_000),
    "eight channels.wav": encode(noise(1.0, amplitude=0.1), channels=8),
    "truncated.mp3": encode(tone(4.0), fmt="mp3")[:9000],
    "spaces and ünïcödé/…call….flac": SPEECH,
    "dots/..hidden..name.flac": SPEECH,
}


@pytest.fixture(scope="module")
def processed(tmp_path_factory, fast_settings):
    inbox = tmp_path_factory.mktemp("inbox")
    results = tmp_path_factory.mktemp("results")
    for name, data in {**INVALID, **VALID}.items():
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(data)
    (inbox / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    stack = Root.local(fast_settings, inbox, results).local_stack()
    try:
        first = run_folder(stack, fast_settings.input, progress=False)
        second = run_folder(stack, fast_settings.input, progress=False)
    finally:
        stack.close()
    return inbox, results, first, second


def load(results: Path, name: str) -> dict:
    text = (results / (name + ".json")).read_text()
    assert text.count("\n") == 1 and text.endswith("\n"), "one line of JSON"
    record = json.loads(text)
    jsonschema.validate(record, SCHEMA)
    return record


@pytest.mark.parametrize("name", INVALID)
def test_invalid_input_gets_a_clear_failed_result(processed, name: str) -> None:
    _, results, _, _ = processed
    record = load(results, name)
    assert record["status"] == "failed"
    assert record["error"]["code"] in {"empty_file", "not_audio", "corrupt_audio", "no_audio_decoded"}
    assert len(record["error"]["message"]) > 15


@pytest.mark.parametrize("name", VALID)
def test_odd_but_valid_input_gets_an_ok_result(processed, name: str) -> None:
    _, results, _, _ = processed
    record = load(results, name)
    assert record["status"] == "ok", record["error"]
    assert record["job"]["name"] == name
    assert record["engines"]["ser"]["trained"] is True
    assert record["engines"]["ser"]["name"] == "whisper-head"


def test_speech_under_odd_names_is_transcribed_with_an_emotion_per_segment(processed) -> None:
    _, results, _, _ = processed
    record = load(results, "spaces and ünïcödé/…call….flac")
    text = " ".join(s["text"] for s in record["segments"]).lower()
    assert "refund" in text and "replacement" in text
    labels = ["angry", "happy", "neutral", "sad"]
    assert all(s["emotion"]["label"] in labels and [x["label"] for x in s["emotion"]["scores"]] == labels
               for s in record["segments"])
    assert record["summary"]["dominant_emotion"] in [s["label"] for s in record["summary"]["distribution"]]


def test_silence_is_ok_with_no_segments(processed) -> None:
    _, results, _, _ = processed
    record = load(results, "silence.wav")
    assert record["segments"] == [] and record["summary"]["dominant_emotion"] is None
    assert (record["language"], record["language_probability"]) == (None, None), "no speech, no language"


def test_no_output_escapes_the_results_folder_and_ignored_files_get_none(processed) -> None:
    inbox, results, first, _ = processed
    written = {p.relative_to(results).as_posix() for p in results.rglob("*.json") if ".staging" not in p.parts}
    assert written == {name + ".json" for name in {**INVALID, **VALID}}
    assert first.ignored == 1  # .DS_Store
    assert not list(inbox.rglob("*.json")), "nothing is written among the inputs"
    # Object names with ../ segments (which no file on disk has) are the folder store's test.


def test_summary_counts_and_a_rerun_skips_what_is_done(processed) -> None:
    _, _, first, second = processed
    assert (first.ok, first.failed, first.errors) == (len(VALID), len(INVALID), [])
    assert first.audio_seconds > 40
    assert (second.ok, second.failed, second.already_done) == (0, 0, len(VALID) + len(INVALID))
    assert not any("untrained" in line for line in first.lines()), "the default emotion model is trained"
    # A rerun still says which files failed before, and why.
    assert sorted(name for name, _ in second.done_but_failed) == sorted(INVALID)
    assert f"({len(INVALID)} of them failed)" in second.lines()[0]
    assert any(line.startswith("  failed in an earlier run: picture.png: not_audio") for line in second.lines())


def test_stt_and_ser_ran_concurrently(processed) -> None:
    _, results, _, _ = processed
    timings = load(results, "dots/..hidden..name.flac")["timings"]
    span = {k: (datetime.fromisoformat(timings[k]["started_at"]), datetime.fromisoformat(timings[k]["finished_at"]))
            for k in ("stt", "ser")}
    overlap = min(span["stt"][1], span["ser"][1]) - max(span["stt"][0], span["ser"][0])
    assert overlap.total_seconds() > 0, span


def test_cli_analyze_prints_one_merged_result(fast_settings, tmp_path) -> None:
    audio = tmp_path / "clip.flac"
    audio.write_bytes(SPEECH)
    env = {**os.environ, "MODELS_DIR": fast_settings.models.models_dir, "STT_MODEL": fast_settings.stt.model}
    out = subprocess.run([sys.executable, "-m", "workers", "analyze", str(audio)], capture_output=True, text=True,
                         env=env, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    jsonschema.validate(record, SCHEMA)
    assert record["status"] == "ok" and "refund" in " ".join(s["text"] for s in record["segments"]).lower()
    # The job is the one `run` over this folder makes, and the line is the canonical stored one.
    generation = Root.local(fast_settings, tmp_path, tmp_path / "out").store.stat(str(tmp_path.resolve()), "clip.flac")
    assert record["job"]["job_id"] == make_job_id(str(tmp_path.resolve()), "clip.flac", generation.generation)
    assert out.stdout == dumps(loads(Result, out.stdout)) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.flac"], "analyze writes nothing beside the file"


def test_cli_help_explains_every_option() -> None:
    out = subprocess.run([sys.executable, "-m", "workers", "run", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0
    for flag in ("--stt-engine", "--ser-model", "--max-audio-seconds", "STT_MODEL", "--force"):
        assert flag in out.stdout


def test_each_processed_file_gets_a_readable_line(processed) -> None:
    from workers.processing.local_run import describe

    _, results, _, _ = processed
    ok = describe(from_dict(Result, load(results, "spaces and ünïcödé/…call….flac")))
    assert ok.startswith("ok ") and "language en" in ok and "untrained" not in ok
    failed = describe(from_dict(Result, load(results, "picture.png")))
    assert failed.startswith("FAILED picture.png: not_audio")


def permissions_that_hold() -> list[str]:
    """A command prefix under which file permissions apply, as they do to a user: as root,
    the capabilities that override them are dropped."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file permissions cannot be made to hold")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_cli_run_gives_unreadable_and_odd_files_failed_results_and_goes_on(fast_settings, tmp_path) -> None:
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    (inbox / "closed").mkdir(parents=True)
    silence = encode(tone(2.0, amplitude=0.0))
    (inbox / "sealed").mkdir()
    for name in ("silence.wav", "%00", "locked.wav", "closed/inside.wav", "sealed/unseen.wav"):
        (inbox / name).write_bytes(silence)
    os.mkfifo(inbox / "pipe.wav")
    (inbox / "locked.wav").chmod(0)
    (inbox / "closed").chmod(0o444)  # its names can be listed, its files not opened
    (inbox / "sealed").chmod(0)  # not even its names
    env = {**os.environ, "MODELS_DIR": fast_settings.models.models_dir, "STT_MODEL": fast_settings.stt.model}
    run = [*permissions_that_hold(), sys.executable, "-m", "workers", "run", "--no-progress"]
    lock_files_before = {p for p in os.listdir(tempfile.gettempdir()) if p.endswith(".lock")}
    try:
        out = subprocess.run([*run, str(inbox), str(results)], capture_output=True, text=True, env=env,
                             cwd=REPO_ROOT, timeout=300)
    finally:
        (inbox / "closed").chmod(0o755)
        (inbox / "sealed").chmod(0o755)
    assert out.returncode == 0, out.stderr
    assert "skipped: 1" in out.stderr and "skipped: sealed/: the folder cannot be listed" in out.stderr
    records = {name: load(results, name) for name in ("silence.wav", "%00", "locked.wav", "closed/inside.wav",
                                                       "pipe.wav")}
    assert records["silence.wav"]["status"] == records["%00"]["status"] == "ok"
    assert records["%00"]["job"]["name"] == "%00"
    for name in ("locked.wav", "closed/inside.wav", "pipe.wav"):
        error = records[name]["error"]
        assert (records[name]["status"], error["code"]) == ("failed", "unreadable"), (name, error)
        assert str(inbox / name) in error["message"] and "gs://" not in error["message"]
    assert "is a FIFO" in records["pipe.wav"]["error"]["message"]
    assert {p for p in os.listdir(tempfile.gettempdir()) if p.endswith(".lock")} == lock_files_before

    same = subprocess.run([*run, str(inbox), str(inbox / ".")], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=120)
    assert same.returncode != 0 and "is the inbox folder itself" in same.stderr
    assert not list(inbox.rglob("*.json")), "nothing is written among the inputs"


def test_odd_files_are_skipped_or_flagged_in_the_summary_and_the_run_goes_on(fast_settings, tmp_path) -> None:
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    clip = encode(tone(2.0, freq=300.0))
    long_name = "x" * 248 + ".wav"  # 252 bytes: its result, 257, is no file name
    for name in ("a.wav", long_name, "z.wav"):
        (inbox / name).write_bytes(clip)
    fd = os.open(os.fsencode(inbox) + b"/\xff\xfe.wav", os.O_CREAT | os.O_WRONLY)  # not valid UTF-8
    os.write(fd, clip)
    os.close(fd)
    os.symlink("gone.wav", inbox / "dangling.wav")
    flac = encode(tone(6.0, freq=300.0), fmt="flac")
    (inbox / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    stale = results / ".staging" / "left-by-a-full-disk" / ".tmp-0123abcd"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    os.utime(stale, (1, 1))

    stack = Root.local(fast_settings, inbox, results).local_stack()
    try:
        summary = run_folder(stack, fast_settings.input, progress=False)
    finally:
        stack.close()

    assert (summary.ok, summary.failed, summary.errors) == (3, 0, [])
    assert {load(results, name)["status"] for name in ("a.wav", "z.wav", "truncated.flac")} == {"ok"}
    skipped = dict(summary.skipped)
    assert set(skipped) == {long_name, "\\xff\\xfe.wav", "dangling.wav"}
    assert "at most 255" in skipped[long_name] and "not valid UTF-8" in skipped["\\xff\\xfe.wav"]
    assert "symbolic link to gone.wav" in skipped["dangling.wav"]
    warnings = load(results, "truncated.flac")["decode_warnings"]
    assert warnings and any("decoded of the 6.0 s" in w for w in warnings), warnings
    assert load(results, "a.wav")["decode_warnings"] is None
    assert [name for name, _ in summary.partly_decoded] == ["truncated.flac"]
    lines = "\n".join(summary.lines())
    assert "skipped: 3" in lines and "decoded in part: 1" in lines and "skipped: dangling.wav: a symbolic" in lines
    assert not stale.exists(), "a temporary file left by an earlier run is removed"


def test_a_results_folder_that_is_the_inbox_under_another_path_is_refused(fast_settings, tmp_path) -> None:
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    results.mkdir()
    (inbox / "a.wav").write_bytes(encode(tone(1.0)))
    mounted = subprocess.run(["mount", "--bind", str(inbox), str(results)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({mounted.stderr.strip()}); the inode comparison is not exercised")
    try:
        env = {**os.environ, "MODELS_DIR": fast_settings.models.models_dir, "STT_MODEL": fast_settings.stt.model}
        out = subprocess.run([sys.executable, "-m", "workers", "run", "--no-progress", str(inbox), str(results)],
                             capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    finally:
        subprocess.run(["umount", str(results)], check=True)
    assert out.returncode != 0 and "is the inbox folder itself" in out.stderr
    assert not list(inbox.rglob("*.json")), "nothing is written among the inputs"


def test_each_file_is_decoded_once_for_both_engines_and_both_see_the_same_audio(tmp_path, fast_settings,
                                                                              monkeypatch) -> None:
    from workers.processing import handlers

    decoded: list[str] = []
    real = handlers.decode

    def counted(path, **kw):
        decoded.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(handlers, "decode", counted)
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    shutil.copy(SAMPLES / "es_reserva.flac", inbox / "a.flac")
    (inbox / "b.wav").write_bytes(encode(tone(2.0)))
    (inbox / "bad.wav").write_bytes(random_bytes(2000))
    stack = Root.local(fast_settings, inbox, results).local_stack(jobs=2)
    try:
        summary = run_folder(stack, fast_settings.input, progress=False, jobs=2)
    finally:
        stack.close()
    assert (summary.ok, summary.failed) == (2, 1)
    assert len(decoded) == 3, "one decode per file, STT and SER together"
    for name in ("a.flac", "b.wav"):
        result = loads(Result, (results / f"{name}.json").read_text())
        assert result.status == "ok" and result.duration and result.duration > 1.5
    failed = loads(Result, (results / "bad.wav.json").read_text())
    assert failed.status == "failed" and failed.error and failed.error.code in ("not_audio", "corrupt_audio")
