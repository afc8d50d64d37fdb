"""The backfill and status commands on the local folder store (no models needed for these)."""

from __future__ import annotations

from workers.entrypoints.cli.main import main


def test_local_dry_run_prints_the_plan_and_status_tells_an_unprocessed_file(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    for i in range(3):
        (inbox / "a" / f"{i}.wav").write_bytes(b"\0" * 32_000)
    (inbox / "a" / ".DS_Store").write_bytes(b"x")
    results = tmp_path / "results"
    assert main(["backfill", "--local-inbox", str(inbox), "--local-results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to publish: 3 (new: 3)" in out and "total bytes: 96,000" in out and "estimated GPU time" in out
    assert main(["status", "a/1.wav", "--local-inbox", str(inbox), "--local-results", str(results)]) == 0
    assert "queued, or not picked up" in capsys.readouterr().out


def test_missing_folder_and_half_given_local_options_are_clear_errors(tmp_path, capsys):
    assert main(["backfill", "--local-inbox", str(tmp_path / "nope"), "--local-results", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["backfill", "--local-inbox", str(tmp_path)]) == 2
    assert "go together" in capsys.readouterr().err
