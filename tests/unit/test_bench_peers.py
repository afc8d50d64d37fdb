"""The peers bench's verdict on its targets against sequential decoding (bench/peers.py)."""

from __future__ import annotations

from bench.peers import _verdict, compare_wer


def _run(seconds: float, wer: float, coverage: float = 0.995) -> dict:
    return {"audio_seconds": 232.0, "seconds": seconds, "wer": wer, "coverage": coverage}


def test_the_worst_round_decides_each_target() -> None:
    mine = [_run(12.0, 0.050), _run(12.0, 0.050, coverage=0.985)]
    sequential = [_run(20.0, 0.055), _run(17.0, 0.044)]
    verdict = _verdict(mine, sequential)
    assert "speed 1.42x sequential (target >= 1.5x): NOT met" in verdict
    assert "WER +0.006 against sequential (target <= +0.005): NOT met" in verdict
    assert "speech coverage 98.5% (target >= 99%): NOT met" in verdict


def test_targets_met_in_every_round_are_met() -> None:
    verdict = _verdict([_run(12.0, 0.050)] * 2, [_run(19.0, 0.052), _run(20.0, 0.055)])
    assert verdict.count(": met") == 3 and "NOT" not in verdict


def test_without_a_reference_wer_is_left_out() -> None:
    verdict = _verdict([_run(12.0, None)], [_run(20.0, None)])  # type: ignore[arg-type]
    assert "WER" not in verdict and "speed 1.67x" in verdict


def test_lower_wer_is_said_only_when_the_ranges_over_runs_do_not_overlap() -> None:
    words = {"words": 600}
    mine = [_run(12.0, 0.050) | words, _run(12.0, 0.055) | words]
    assert compare_wer(mine, [_run(20.0, 0.070), _run(20.0, 0.248)]).startswith(
        "lower (0.050–0.055 against 0.070–0.248 over 2 and 2 run(s) of 600 words)")
    assert compare_wer(mine, [_run(20.0, 0.052), _run(20.0, 0.076)]).startswith("no difference shown")
    assert compare_wer(mine, [_run(20.0, 0.030)]).startswith("higher")
