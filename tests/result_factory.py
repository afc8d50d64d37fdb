"""Stored records for tests: results of any size for the report, and stored results and partials
for the operations, all built on the golden records."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Sequence

from workers.core.contracts import to_dict

GOLDEN = Path(__file__).parent / "data" / "golden"
LABELS = ("angry", "happy", "neutral", "sad")


def golden(name: str = "result.json") -> dict:
    return json.loads((GOLDEN / name).read_text())


def synthetic_result(
    segments: int,
    *,
    seconds_each: float = 3.0,
    labels: Sequence[str] = LABELS,
    speakers: Sequence[str] = (),
    name: str = "call.flac",
) -> dict:
    """``segments`` back-to-back segments with a pause of a tenth of their length; the top label
    cycles through ``labels`` and, when given, turns alternate between ``speakers``."""
    result = copy.deepcopy(golden())
    result["job"]["name"] = name
    result["engines"]["ser"]["trained"] = True
    rows = []
    for i in range(segments):
        start = i * seconds_each * 1.1
        top = labels[i % len(labels)]
        rest = (1 - 0.7) / max(len(labels) - 1, 1)
        scores = [{"label": label, "score": 0.7 if label == top else round(rest, 4)} for label in labels]
        row = {"id": i, "start": round(start, 2), "end": round(start + seconds_each, 2),
               "text": f"Sentence number {i}, said with some {top} feeling.", "avg_logprob": -0.2,
               "no_speech_prob": 0.01, "words": [],
               "emotion": {"label": top, "sentiment": "NEUTRAL", "scores": scores}}
        row["speaker"] = speakers[i % len(speakers)] if speakers else None
        rows.append(row)
    result["segments"] = rows
    result["speakers"] = [_speaker_summary(name, rows, labels) for name in dict.fromkeys(speakers)] or None
    result["turns"] = None  # the golden's turns are of its own two segments
    result["duration"] = round(segments * seconds_each * 1.1, 2)
    share = round(1 / len(labels), 4)
    result["summary"]["distribution"] = [{"label": label, "score": share} for label in labels]
    result["summary"]["dominant_emotion"] = labels[0]
    result["summary"]["speech_seconds"] = segments * seconds_each
    return result


def synthetic_windows(result: dict, *, window: float = 3.0, hop: float = 1.5) -> dict:
    """The SER partial behind ``result``: windows over its whole duration, each label's score rising
    and falling in turn."""
    labels = [item["label"] for item in result["summary"]["distribution"]]
    windows, start = [], 0.0
    while start == 0.0 or start + window <= result["duration"]:
        top = int(start / hop) % len(labels)
        scores = [0.6 if i == top else round(0.4 / (len(labels) - 1), 4) for i in range(len(labels))]
        windows.append({"start": start, "end": start + window, "scores": scores})
        start += hop
    partial = golden("ser_partial.json")
    partial.update(job_id=result["job"]["job_id"], labels=labels, windows=windows, duration=result["duration"],
                   window_seconds=window, hop_seconds=hop)
    return partial


def _speaker_summary(name: str, rows: list[dict], labels: Sequence[str]) -> dict:
    mine = [r for r in rows if r["speaker"] == name]
    talk = sum(r["end"] - r["start"] for r in mine)
    mean = {label: sum(next(x["score"] for x in r["emotion"]["scores"] if x["label"] == label) for r in mine)
            / len(mine) for label in labels}
    return {"speaker": name, "channel": None, "talk_seconds": talk,
            "share": talk / sum(r["end"] - r["start"] for r in rows),
            "turns": sum(r["speaker"] == name and (i == 0 or rows[i - 1]["speaker"] != name)
                         for i, r in enumerate(rows)),
            "dominant_emotion": max(mean, key=mean.__getitem__),
            "distribution": [{"label": label, "score": v} for label, v in mean.items()],
            "sentiment_distribution": [], "text_sentiment": None, "interruptions": 0, "overlap_seconds": 0.0}


def silence_result() -> dict:
    result = golden()
    result["segments"] = []
    result["speakers"] = None
    result["summary"] = {"dominant_emotion": None, "sentiment": None, "distribution": [],
                         "sentiment_distribution": [], "speech_seconds": 0.0}
    return result


def stored_result(bucket: str, name: str, generation: int, *, version: str = "0.1.0", status: str = "ok",
                  error: dict | None = None) -> bytes:
    """A stored result for the upload (bucket, name, generation): the golden one, renamed."""
    from workers.core.jobs import make_job

    body = golden()
    body["job"] = to_dict(make_job(bucket=bucket, name=name, generation=generation, size=1, content_type=None,
                                   source="upload"))
    body.update(pipeline_version=version, status=status, error=error)
    return json.dumps(body).encode()


def stored_partial(job_id: str, kind: str, *, status: str = "ok", error: dict | None = None) -> bytes:
    """A stored STT or SER partial of the job: the golden one, renamed."""
    body = golden(f"{kind}_partial.json")
    body.update(job_id=job_id, status=status, error=error)
    return json.dumps(body).encode()
