"""Handlers over in-memory ports: idempotency, races, re-uploads, bad input, transient faults."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest

from tests.audio_factory import encode, png_bytes, tone
from workers.adapters.memory import MemoryBlobStore, MemoryBus
from workers.core.contracts import (Engine, EmotionWindow, JobMessage, PartialReady, Result, Segment, Word, from_dict,
                                   loads, to_dict)
from workers.core.engines import EmotionTrack
from workers.core.engines import Coverage
from workers.core.engines import Transcript
from workers.core.errors import NotFound, TransientError
from tests.handlers_factory import make_handlers
from workers.engines.diarization import speech_regions
from workers.processing.handlers import Handlers
from workers.processing.worker import SttWorker
from workers.core.jobs import make_job, partial_key


class CountingStt:
    engine = Engine("fake-stt", "fake", "0", True)

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio: np.ndarray) -> Transcript:
        self.calls += 1
        d = len(audio) / 16000
        words = [Word(0.1, d - 0.1, " hello.", 0.9)]
        return Transcript("en", 0.9, d, [Segment(0, 0.1, d - 0.1, "hello.", -0.1, 0.0, words)], Coverage(d, d),
                          repair_budget_spent=True)


class CountingSer:
    engine = Engine("fake-ser", "fake", "0", True)

    def __init__(self) -> None:
        self.calls = 0

    def classify(self, audio: np.ndarray) -> EmotionTrack:
        self.calls += 1
        d = len(audio) / 16000
        return EmotionTrack(3.0, 1.5, ["happy", "sad"], [EmotionWindow(0.0, d, [0.8, 0.2])], d)


@pytest.fixture
def env():
    store, bus = MemoryBlobStore(), MemoryBus()
    return make_handlers(store, bus, stt=CountingStt(), ser=CountingSer()), store, bus


def upload(store: MemoryBlobStore, name: str, data: bytes) -> JobMessage:
    generation = store.put("inbox", name, data)
    return make_job(bucket="inbox", name=name, generation=generation, size=len(data), content_type=None,
                    source="upload")


def run_job(p: Handlers, bus: MemoryBus, job: JobMessage) -> list:
    outcomes = [p.stt(job), p.ser(job)]
    for message in bus.on("partials")[-2:]:
        outcomes.append(p.joiner(from_dict(PartialReady, message)))
    return outcomes


def result_of(store: MemoryBlobStore, name: str) -> dict:
    return json.loads(store.read("results", name + ".json")[0])


def test_a_job_writes_two_partials_once_and_one_result(env) -> None:
    p, store, bus = env
    job = upload(store, "a/call.wav", encode(tone(2.0)))
    outcomes = run_job(p, bus, job)
    assert [o.status for o in outcomes] == ["done", "done", "done", "duplicate"]
    result = result_of(store, "a/call.wav")
    assert result["status"] == "ok" and result["job"] == to_dict(job)
    assert result["segments"][0]["emotion"]["label"] == "happy"
    assert result["speech_coverage"] == 1.0, "the STT partial's coverage reaches the result"
    assert result["repair_budget_spent"] is True, "so does its flag that the repair ran out of passes"
    partial_writes = [w for w in store.writes if w[0] == "staging"]
    assert partial_writes == [("staging", partial_key(job.job_id, "stt"), 0),
                              ("staging", partial_key(job.job_id, "ser"), 0)]


def test_a_redelivered_job_reannounces_without_recomputing(env) -> None:
    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(2.0)))
    run_job(p, bus, job)
    assert p.stt(job).status == "duplicate"
    assert p.ser(job).status == "duplicate"
    assert (p.stt.worker.stt.calls, p.ser.worker.ser.calls) == (1, 1)
    assert len(bus.on("partials")) == 4  # announced again: a lost first announcement cannot strand the job
    for message in bus.on("partials")[2:]:
        assert p.joiner(from_dict(PartialReady, message)).status == "duplicate"
    assert len([w for w in store.writes if w[0] == "results"]) == 1


def test_racing_joiners_write_exactly_one_result(env) -> None:
    p, store, bus = env
    job = upload(store, "race.wav", encode(tone(2.0)))
    p.stt(job)
    p.ser(job)
    ready = from_dict(PartialReady, bus.on("partials")[-1])
    outcomes, barrier = [], threading.Barrier(8)

    def join() -> None:
        barrier.wait()
        outcomes.append(p.joiner(ready).status)

    threads = [threading.Thread(target=join) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["done"] + ["duplicate"] * 7


def test_a_reupload_replaces_the_result_and_an_old_job_cannot_overwrite_it(env) -> None:
    p, store, bus = env
    old = upload(store, "call.wav", encode(tone(2.0)))
    old_stt, old_ser = p.stt(old), p.ser(old)
    old_ready = from_dict(PartialReady, bus.on("partials")[-1])
    new = upload(store, "call.wav", encode(tone(3.0)))
    run_job(p, bus, new)
    assert result_of(store, "call.wav")["job"]["generation"] == new.generation
    assert p.joiner(old_ready).status == "superseded"
    assert result_of(store, "call.wav")["job"]["generation"] == new.generation
    assert (old_stt.status, old_ser.status) == ("done", "done")


def test_bad_input_becomes_a_failed_result_not_an_exception(env) -> None:
    p, store, bus = env
    job = upload(store, "picture.mp3", png_bytes())
    outcomes = run_job(p, bus, job)
    assert [o.status for o in outcomes[:2]] == ["failed", "failed"]
    result = result_of(store, "picture.mp3")
    assert result["status"] == "failed" and result["error"]["code"] == "not_audio"
    assert "no audio stream" in result["error"]["message"]


def test_a_replaced_source_generation_is_recorded_as_gone(env) -> None:
    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(1.0)))
    store.put("inbox", "call.wav", encode(tone(1.5)))  # re-uploaded before the job ran
    p.stt(job)
    stt = json.loads(store.read("staging", partial_key(job.job_id, "stt"))[0])
    assert stt["status"] == "failed" and stt["error"]["code"] == "source_gone"


def test_a_job_naming_a_generation_that_does_not_exist_neither_blocks_nor_replaces_the_real_result(env) -> None:
    p, store, bus = env
    forged = make_job(bucket="inbox", name="victim.wav", generation=2**62, size=1, content_type=None, source="upload")
    run_job(p, bus, forged)  # before the real upload: it only fills the gap
    assert result_of(store, "victim.wav")["error"]["code"] == "source_gone"

    real = upload(store, "victim.wav", encode(tone(1.0)))
    assert [o.status for o in run_job(p, bus, real)][2:] == ["done", "duplicate"]
    assert (result_of(store, "victim.wav")["status"], result_of(store, "victim.wav")["job"]["generation"]) == (
        "ok", real.generation)

    again = make_job(bucket="inbox", name="victim.wav", generation=2**62 + 1, size=1, content_type=None,
                     source="upload")
    assert [o.status for o in run_job(p, bus, again)][2:] == ["superseded"] * 2  # after it: the real result stays
    assert result_of(store, "victim.wav")["job"]["generation"] == real.generation


def test_transient_store_faults_propagate_for_a_retry(env) -> None:
    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(1.0)))

    def broken(*args, **kwargs):
        raise TransientError("storage unavailable")

    store.write = broken
    with pytest.raises(TransientError):
        p.stt(job)
    assert bus.on("partials") == []


def test_a_delivery_that_loses_the_partial_race_announces_the_stored_partial(env) -> None:
    p, store, bus = env
    job = upload(store, "race.wav", encode(tone(2.0)))
    key = partial_key(job.job_id, "stt")

    class DeadBus(MemoryBus):
        def publish(self, *args, **kwargs):
            raise TransientError("instance stopped before announcing")

    # Delivery A stores the STT partial, then dies before its announcement.
    a = make_handlers(store, DeadBus(), stt=CountingStt(), ser=CountingSer())
    # Delivery B had looked for the partial before A stored it, so it computes too and loses the write.
    read, looked = store.read, []

    def read_as_b_saw_it(bucket: str, name: str):
        if name == key and not looked:
            looked.append(name)
            with pytest.raises(TransientError):
                a.stt(job)
            raise NotFound(key)
        return read(bucket, name)

    store.read = read_as_b_saw_it
    assert p.stt(job).status == "duplicate"
    announced = [m for m in bus.on("partials") if m["kind"] == "stt"]
    assert len(announced) == 1 and announced[0]["status"] == "ok"


def test_the_joiner_waits_until_both_partials_exist(env) -> None:
    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(1.0)))
    p.stt(job)
    assert p.joiner(from_dict(PartialReady, bus.on("partials")[-1])).status == "waiting"
    assert store.stat("results", "call.wav.json") is None
    p.ser(job)
    assert p.joiner(from_dict(PartialReady, bus.on("partials")[-1])).status == "done"


def test_a_new_model_version_reprocesses_the_same_upload_once(env) -> None:
    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(2.0)))
    run_job(p, bus, job)
    stale_ready = from_dict(PartialReady, bus.on("partials")[-1])
    before = result_of(store, "call.wav")

    upgraded = CountingStt()
    upgraded.engine = Engine("fake-stt", "fake", "1", True)
    p.stt = dataclasses.replace(p.stt, worker=SttWorker(upgraded))
    outcomes = run_job(p, bus, job)
    assert [o.status for o in outcomes[:2]] == ["done", "duplicate"]  # STT redone, SER kept
    after = result_of(store, "call.wav")
    assert before["engines"]["stt"]["version"] == "0" and after["engines"]["stt"]["version"] == "1"
    assert upgraded.calls == 1 and p.ser.worker.ser.calls == 1

    assert p.stt(job).status == "duplicate"  # and only once
    # A joiner that only now reads the partials merges the same new result: nothing changes.
    assert p.joiner(stale_ready).status == "duplicate"
    assert result_of(store, "call.wav") == after


def test_a_late_joiner_holding_older_partials_cannot_undo_a_reprocessing(env) -> None:
    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(2.0)))
    run_job(p, bus, job)
    # A joiner read the first partials and merged them, then stalled before writing...
    late = loads(Result, store.read("results", "call.wav.json")[0])
    late_inputs = {kind: store.stat("staging", partial_key(job.job_id, kind)).generation for kind in ("stt", "ser")}
    # ...while a reprocessing run remade the STT partial with a new model and stored its result.
    upgraded = CountingStt()
    upgraded.engine = Engine("fake-stt", "fake", "9", True)
    p.stt = dataclasses.replace(p.stt, worker=SttWorker(upgraded))
    run_job(p, bus, job)
    reprocessed = store.read("results", "call.wav.json")[0]
    assert loads(Result, reprocessed).engines.stt.version == "9"

    assert p.joiner._store_result(late, late_inputs).status == "duplicate"  # its STT partial is not live any more
    assert store.read("results", "call.wav.json")[0] == reprocessed
    live = {kind: store.stat("staging", partial_key(job.job_id, kind)).generation for kind in ("stt", "ser")}
    older_upload = dataclasses.replace(late, job=dataclasses.replace(job, generation=1))
    assert p.joiner._store_result(older_upload, live).status == "superseded"
    # A new pipeline version over the live partials is a reprocessing run: it replaces the result.
    newer = dataclasses.replace(loads(Result, reprocessed), pipeline_version="9.9.9")
    assert p.joiner._store_result(newer, live).status == "done"
    assert loads(Result, store.read("results", "call.wav.json")[0]).pipeline_version == "9.9.9"


class FakeDiarizer:
    engine = Engine("fake-diarizer", "segmentation@abc+embedding@def", "threshold=0.5 max_speakers=0", True)

    def turns(self, audio: np.ndarray):
        from workers.core.engines import Turn

        return [Turn(0.0, len(audio) / 16000, "S1")]


def test_a_result_names_the_diarizer_that_made_its_speakers_and_none_when_nothing_was_diarized() -> None:
    from workers.processing.worker import ChannelOptions, SerWorker
    from workers.processing.audio import DecodedAudio

    store, bus = MemoryBlobStore(), MemoryBus()
    p = make_handlers(store, bus, stt=CountingStt(), ser=CountingSer(), diarizer=FakeDiarizer())
    job = upload(store, "mono.wav", encode(tone(2.0)))
    run_job(p, bus, job)
    result = result_of(store, "mono.wav")
    assert result["engines"]["diarizer"] == to_dict(FakeDiarizer.engine)
    assert [t["speaker"] for t in result["turns"]] == ["S1"]

    store, bus = MemoryBlobStore(), MemoryBus()
    p = make_handlers(store, bus, stt=CountingStt(), ser=CountingSer())  # DIARIZATION=off
    run_job(p, bus, upload(store, "mono.wav", encode(tone(2.0))))
    assert result_of(store, "mono.wav")["engines"]["diarizer"] is None

    # channels analysed apart: each channel's speech makes its speaker, no diarizer does
    two = np.stack([tone(2.0), tone(2.0)])
    audio = DecodedAudio(two.mean(axis=0), "wav", 16000, 2, channels=(two[0], two[1]))
    worker = SerWorker(CountingSer(), FakeDiarizer(), ChannelOptions("split"), speech=speech_regions)
    partial = worker.analyse("j", audio)
    assert partial.channels == ["CH1", "CH2"] and partial.diarizer is None


def test_a_ser_partial_made_by_another_diarizer_is_made_again_once(env) -> None:
    from workers.processing.worker import SerWorker

    p, store, bus = env
    job = upload(store, "call.wav", encode(tone(2.0)))
    run_job(p, bus, job)  # DIARIZATION=off: no speakers
    assert result_of(store, "call.wav")["engines"]["diarizer"] is None

    p.ser = dataclasses.replace(p.ser, worker=SerWorker(CountingSer(), FakeDiarizer()))
    outcomes = run_job(p, bus, job)
    assert [o.status for o in outcomes[:2]] == ["duplicate", "done"]  # STT kept, SER redone
    assert result_of(store, "call.wav")["engines"]["diarizer"] == to_dict(FakeDiarizer.engine)
    assert p.ser(job).status == "duplicate"  # and only once

    bounded = FakeDiarizer()
    bounded.engine = dataclasses.replace(FakeDiarizer.engine, version="threshold=0.5 max_speakers=2")
    p.ser = dataclasses.replace(p.ser, worker=SerWorker(CountingSer(), bounded))
    assert p.ser(job).status == "done"  # MAX_SPEAKERS changed: the speakers are made again
