"""`workers report` and `workers run --report`: pages on disk, audio links, clear errors."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.audio_factory import SAMPLES, encode, png_bytes, tone
from tests.result_factory import GOLDEN, golden
from workers.entrypoints.cli.main import main
from workers.core.settings import REPO_ROOT


def audio_src(html: str) -> str | None:
    found = re.search(r'<audio controls preload="metadata" src="([^"]*)">', html)
    return found and found.group(1)


@pytest.fixture
def result_file(tmp_path: Path) -> Path:
    path = tmp_path / "es_reserva.flac.json"
    path.write_text(json.dumps(golden()))
    return path


def test_report_is_written_beside_the_result_and_links_the_audio_there(result_file: Path, capsys) -> None:
    shutil.copy(SAMPLES / "es_reserva.flac", result_file.parent / "es_reserva.flac")
    assert main(["report", str(result_file)]) == 0
    page = result_file.parent / "es_reserva.flac.html"
    assert audio_src(page.read_text()) == "es_reserva.flac"
    assert f"report: {page}" in capsys.readouterr().err


def test_audio_is_linked_relative_to_the_page_or_embedded(result_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "pages" / "deep" / "call report.html"
    assert main(["report", str(result_file), "--audio", str(SAMPLES / "es_reserva.flac"), "-o", str(out)]) == 0
    src = audio_src(out.read_text())
    assert src and not src.startswith("/") and (out.parent / unquote(src)).resolve() == (SAMPLES / "es_reserva.flac")
    assert main(["report", str(result_file), "--audio", str(SAMPLES / "es_reserva.flac"), "--embed-audio",
                 "-o", str(out)]) == 0
    src = audio_src(out.read_text())
    assert src.startswith("data:audio/flac;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == (SAMPLES / "es_reserva.flac").read_bytes()


def test_without_audio_the_page_has_no_player_and_says_how_to_add_one(result_file: Path, capsys) -> None:
    assert main(["report", str(result_file)]) == 0
    html = result_file.with_suffix(".html").read_text()
    assert audio_src(html) is None and "--audio FILE" in html
    assert "no audio found" in capsys.readouterr().err


def test_windows_come_from_the_option_or_from_the_staging_run_left(result_file: Path, tmp_path: Path) -> None:
    partial = tmp_path / "ser.json"
    partial.write_text(json.dumps(golden("ser_partial.json")))
    assert main(["report", str(result_file), "--windows", str(partial)]) == 0
    assert "each of the 4 emotion windows" in result_file.with_suffix(".html").read_text()
    staged = tmp_path / ".staging" / golden()["job"]["job_id"] / "ser.json"
    staged.parent.mkdir(parents=True)
    partial.rename(staged)
    assert main(["report", str(result_file)]) == 0
    assert "each of the 4 emotion windows" in result_file.with_suffix(".html").read_text()


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "does not exist"),
        ("not json at all", [], "is not a result JSON"),
        (json.dumps({"job_id": "abc", "kind": "stt"}), [], "is not a result JSON (no 'job' field)"),
        (json.dumps(golden()), ["--audio", "missing.wav"], "audio file missing.wav does not exist"),
        (json.dumps(golden()), ["--embed-audio"], "--embed-audio needs the audio"),
        (json.dumps(golden()), ["--windows", "nothing.json"], "SER partial nothing.json does not exist"),
        (json.dumps(golden()), ["--windows", str(GOLDEN / "stt_partial.json")], "is not this result's SER partial"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys, content, args, message) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not path.with_suffix(".html").exists()


def test_report_help_explains_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "workers", "report", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0
    for text in ("RESULT.json", "--audio", "--embed-audio", "-o OUT.html", "run INBOX RESULTS --report"):
        assert text in out.stdout


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory, fast_settings):
    """A real `run --report` over speech, silence and a picture, in nested folders."""
    inbox, results = tmp_path_factory.mktemp("inbox"), tmp_path_factory.mktemp("results")
    (inbox / "calls").mkdir()
    shutil.copy(SAMPLES / "en_support_call.flac", inbox / "calls" / "support call.flac")
    (inbox / "silence.wav").write_bytes(encode(tone(2.0, amplitude=0.0)))
    (inbox / "picture.png").write_bytes(png_bytes())
    code = main(["run", str(inbox), str(results), "--report", "--no-progress",
                 "--models-dir", fast_settings.models.models_dir, "--stt-model", fast_settings.stt.model])
    return code, inbox, results


def test_run_report_writes_a_page_per_result_and_an_index_linking_them(reported_run) -> None:
    code, inbox, results = reported_run
    assert code == 0
    for name in ("calls/support call.flac", "silence.wav", "picture.png"):
        assert (results / (name + ".json")).is_file() and (results / (name + ".html")).is_file(), name
    index = (results / "index.html").read_text()
    assert "3 files: 2 ok, 1 failed" in index
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', index)
    assert links == [("calls/support%20call.flac.html", "calls/support call.flac"),
                     ("picture.png.html", "picture.png"), ("silence.wav.html", "silence.wav")]
    assert re.search(r'<tr class="failed">.*picture\.png.*<code>not_audio</code>', index)
    speech = (results / "calls" / "support call.flac.html").read_text()
    job_id = json.loads((results / "calls" / "support call.flac.json").read_text())["job"]["job_id"]
    windows = len(json.loads((results / ".staging" / job_id / "ser.json").read_text())["windows"])
    assert windows > 10 and f"each of the {windows} emotion windows" in speech
    assert re.findall(r'<polyline [^>]*points="([^"]*)"', speech)[0].count(",") == windows
    src = audio_src(speech)
    assert src and (results / "calls" / unquote(src)).resolve() == (inbox / "calls" / "support call.flac").resolve()
    assert "refund" in speech and "could not be analysed" in (results / "picture.png.html").read_text()
    assert "No speech was found" in (results / "silence.wav.html").read_text()


def test_a_rerun_with_report_lists_the_results_of_earlier_runs_too(reported_run, fast_settings) -> None:
    _, inbox, results = reported_run
    (results / "index.html").unlink()
    assert main(["run", str(inbox), str(results), "--report", "--no-progress",
                 "--models-dir", fast_settings.models.models_dir, "--stt-model", fast_settings.stt.model]) == 0
    assert "3 files: 2 ok, 1 failed" in (results / "index.html").read_text()


def test_run_report_pages_the_results_it_holds_and_reads_only_earlier_ones_from_disk(tmp_path) -> None:
    from tests.result_factory import golden
    from workers.adapters.local import LocalBlobStore
    from workers.core.contracts import Result, loads
    from workers.report.files import ReportWriter

    (tmp_path / "inbox").mkdir()
    store = LocalBlobStore({"inbox": tmp_path / "inbox", "results": tmp_path / "results",
                            "staging": tmp_path / "staging"})
    record = golden()
    for name in ("now.flac", "earlier.flac"):
        store.write("results", name + ".json", json.dumps(record | {"job": record["job"] | {"name": name}}).encode(),
                    if_generation_match=None)
    read: list[str] = []
    original = store.read
    store.read = lambda bucket, name: read.append(name) or original(bucket, name)  # type: ignore[method-assign]
    writer = ReportWriter(store, "results", "inbox", "staging")
    writer.page("now.flac", loads(Result, json.dumps(record | {"job": record["job"] | {"name": "now.flac"}})))
    index = writer.finish()
    assert "now.flac.json" not in read and "earlier.flac.json" in read
    assert (tmp_path / "results" / "now.flac.html").is_file() and (tmp_path / "results" / "earlier.flac.html").is_file()
    assert "2 files" in index.read_text()
