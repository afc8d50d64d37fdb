"""A short run of the fault campaign (bench/faults.py; `python -m bench faults` runs all of it):
duplicates, a service SIGKILLed mid-burst, the buckets refusing writes, jobs for generations
that do not exist, odd object names, forged tokens and malformed messages."""

from __future__ import annotations

import pytest

from bench import faults
from tests.audio_factory import encode, tone
from devstack.stack import SERVICE_ROLES, DevStack


@pytest.fixture(scope="module")
def storage(gcs_emulator):
    return faults.FaultyStorage(gcs_emulator).start()


@pytest.fixture(scope="module")
def stack(pubsub_emulator, storage, fast_settings, tmp_path_factory):
    from tests.integration.conftest import GCS_NOTIFY_TOPIC, running

    with running(DevStack(fast_settings, tmp_path_factory.mktemp("faults"), pubsub_host_port=pubsub_emulator,
                          gcs_url=storage.url, notify_topic=GCS_NOTIFY_TOPIC, prefix="faults-")) as dev:
        yield dev


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    path.write_bytes(encode(tone(2.0, freq=300.0)))
    return path


def assert_every_job_has_exactly_one_result(row: faults.Row) -> None:
    assert (row.results, row.duplicated, row.stuck, row.unjoined, row.lost, row.dead_lettered) == (
        row.jobs, 0, 0, 0, 0, 0), row


def test_each_event_delivered_many_times_gives_one_result_written_once(stack, audio):
    assert_every_job_has_exactly_one_result(faults.redelivered_events(stack, audio, jobs=3, copies=10))


@pytest.mark.parametrize("role", ["ser"])
def test_a_service_killed_twice_mid_burst_loses_and_strands_nothing(stack, audio, role):
    assert_every_job_has_exactly_one_result(faults.killed_mid_burst(stack, audio, jobs=6, role=role))


@pytest.mark.slow
@pytest.mark.parametrize("role", [r for r in SERVICE_ROLES if r != "ser"])
def test_the_other_services_killed_mid_burst_lose_and_strand_nothing(stack, audio, role):
    assert_every_job_has_exactly_one_result(faults.killed_mid_burst(stack, audio, jobs=6, role=role))


def test_staging_and_results_unavailable_for_a_while_delays_jobs_and_loses_none(stack, storage, audio):
    # A 503 is retried inside the storage client, a 403 is not: its pushes fail at once, and the
    # emulator stops pushing several failing messages after 2-4 tries (bench/faults.py reports it).
    assert_every_job_has_exactly_one_result(faults.storage_fault(stack, storage, audio, jobs=4, status=503,
                                                                 seconds=15))


def test_lost_jobs_of_a_403_window_are_healed_by_the_scheduled_healer(stack, storage, audio):
    # With a 403 both engines' writes fail at once and the emulator stops pushing: the jobs have no
    # partial and no result. The healer (`stuck --republish`, hourly in Terraform; every 5 s here)
    # sends them again once the window is over.
    row = faults.storage_fault(stack, storage, audio, jobs=4, status=403, seconds=15, heal_every=5.0)
    assert_every_job_has_exactly_one_result(row)
    assert row.healed > 0


def test_jobs_left_with_both_partials_by_a_403_on_the_results_bucket_are_healed(stack, storage, audio):
    # The engines finish and the joiner's writes are refused: both partials, no result. The healer
    # sends their job messages again; each engine announces its partial again and the joiner merges.
    row = faults.storage_fault(stack, storage, audio, jobs=4, status=403, seconds=15, heal_every=5.0,
                               results_only=True)
    assert_every_job_has_exactly_one_result(row)


def test_a_job_for_a_generation_that_does_not_exist_neither_blocks_nor_replaces_the_real_upload(stack, audio):
    assert_every_job_has_exactly_one_result(faults.forged_generation(stack, audio, jobs=2))


def test_object_names_outside_latin_1_get_their_results_through_the_bridge_and_the_trigger(stack, audio):
    assert_every_job_has_exactly_one_result(faults.odd_names(stack, audio))


def test_a_name_with_a_newline_is_delivered_once_not_refused_and_redelivered_forever(stack, audio):
    assert faults.newline_name(stack, audio) == (1, True)


def test_no_forged_push_token_is_accepted():
    sent, accepted = faults.forged_tokens()
    assert sent >= 10 and accepted == 0


def test_malformed_messages_are_acknowledged_never_retried_or_crashed():
    assert faults.malformed_messages() == {"acknowledged": 10, "retried": 0, "crashed": 0}
